/**
 * A cold archive streamed to a client while the mirror downloads it: the bytes the upstream sent
 * (a .tar.gz from tfhub.dev), followed from the spool as they arrive. The answer says what they
 * are: `application/gzip` (hubcache's extractor and Python's `tarfile` "r|*" detect gzip from the
 * bytes), or to a client that asked with Accept-Encoding, the tar with `Content-Encoding: gzip`,
 * as a cached archive is sent. A failed download cuts the connection: the client sees a body
 * shorter than its Content-Length, or chunks without their end, never a whole archive.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ArchiveEncoding } from "./archive.js";
import type { SpoolKind, SpoolReader } from "./spool.js";

/** The headers for the spool's bytes in the form asked for, or undefined when they are not that form. */
function streamedForm(
  kind: SpoolKind | undefined,
  bodyForm: "tar" | "tar.gz" | undefined,
  encoding: ArchiveEncoding,
): Record<string, string> | undefined {
  if (kind === undefined) return undefined; // not an archive: the resolve fails, and says why
  if (kind === "tar") return bodyForm === "tar.gz" ? undefined : { "content-type": "application/x-tar" };
  if (bodyForm === "tar") return undefined; // plain tar asked for explicitly: from the cache, once there
  if (encoding === "tar+content-encoding") {
    return { "content-type": "application/x-tar", "content-encoding": "gzip" };
  }
  return { "content-type": "application/gzip" };
}

/**
 * Send the spool's bytes as they arrive; false (nothing sent, the reader closed) when they are not
 * the form the client asked for, so the caller answers from the cache once the entry is there.
 */
export async function serveFromSpool(
  req: IncomingMessage,
  res: ServerResponse,
  reader: SpoolReader,
  asked: { bodyForm: "tar" | "tar.gz" | undefined; encoding: ArchiveEncoding },
  headers: Record<string, string>,
): Promise<boolean> {
  const form = streamedForm(await reader.sniff().catch(() => undefined), asked.bodyForm, asked.encoding);
  if (form === undefined || res.destroyed) {
    reader.close();
    return false;
  }
  const total = reader.totalBytes;
  res.writeHead(200, {
    ...headers,
    ...form,
    ...(total === undefined ? {} : { "content-length": String(total) }),
    vary: "Accept-Encoding",
    "accept-ranges": "none",
  });
  res.once("close", () => reader.close());
  // The download failed or started over, or the client went away: cut the connection.
  await pipeline(Readable.from(reader.chunks(), { objectMode: false }), res).catch(() => res.destroy());
  return true;
}
