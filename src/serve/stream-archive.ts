/**
 * A cold archive streamed to a client while the mirror downloads it: the bytes the upstream sent
 * (a .tar.gz from tfhub.dev), followed from the spool as they arrive. The answer says what they
 * are: `application/gzip` (hubcache's extractor and Python's `tarfile` "r|*" detect gzip from the
 * bytes), or to a client that asked with Accept-Encoding, the tar with `Content-Encoding: gzip`,
 * as a cached archive is sent. A failed download cuts the connection: the client sees a body
 * shorter than its Content-Length, or chunks without their end, never a whole archive.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { ArchiveEncoding } from "./archive.js";
import type { SpoolKind, SpoolReader } from "./spool.js";
import { varyOn } from "./headers.js";

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

/** Resolves true once `res` can take more, false when it closed or did not drain within `idleMs`. */
function drained(res: ServerResponse, idleMs: number): Promise<boolean> {
  if (res.destroyed) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      res.off("drain", onDrain).off("close", onClose);
      resolve(ok);
    };
    const onDrain = (): void => done(true);
    const onClose = (): void => done(false);
    const timer = setTimeout(() => done(false), idleMs);
    res.on("drain", onDrain).on("close", onClose);
  });
}

/**
 * Send the spool's bytes as they arrive; false (nothing sent, the reader closed) when they are not
 * the form the client asked for, so the caller answers from the cache once the entry is there.
 * While the upstream is slow the client's socket may be quiet; a client that stops reading for
 * `idleMs` is cut (it holds one chunk meanwhile, never the download).
 */
export async function serveFromSpool(
  req: IncomingMessage,
  res: ServerResponse,
  reader: SpoolReader,
  asked: { bodyForm: "tar" | "tar.gz" | undefined; encoding: ArchiveEncoding; idleMs: number },
  headers: Record<string, string>,
): Promise<boolean> {
  const form = streamedForm(await reader.sniff().catch(() => undefined), asked.bodyForm, asked.encoding);
  if (form === undefined || res.destroyed) {
    reader.close();
    return res.destroyed; // a client gone meanwhile needs no answer
  }
  const total = reader.totalBytes;
  res.writeHead(200, {
    ...headers,
    ...form,
    ...(total === undefined ? {} : { "content-length": String(total) }),
    vary: varyOn(headers, "Accept", "Accept-Encoding"),
    // Another form than the cached model's answer will be (gzip, not tar): never kept by a cache.
    "cache-control": "no-store",
    "accept-ranges": "none",
  });
  res.once("close", () => reader.close());
  try {
    for await (const chunk of reader.chunks()) {
      if (res.destroyed) break;
      if (!res.write(chunk) && !(await drained(res, asked.idleMs))) break;
    }
  } catch {
    // The download failed or started over: cut the connection (below).
  }
  if (!reader.finished || res.destroyed) {
    res.destroy();
    return true;
  }
  req.socket.setTimeout(asked.idleMs); // the end may wait for a client that does not read
  res.end();
  return true;
}
