/**
 * A cached model as the hub sends it: a tar of the entry folder, the way TF Hub's docs build one
 * (`tar -C dir .`: entries `./saved_model.pb`, directory entries first). Plain tar needs no inflate
 * on the client (the fastest form for a hubcache client on a LAN); gzip'd is the hub's own form.
 * Streamed with backpressure: a slow client holds only a socket's worth of bytes.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import zlib from "node:zlib";
import * as tar from "tar";

export type ArchiveEncoding =
  /** Plain tar. */
  | "tar"
  /** Plain tar sent with Content-Encoding: gzip (the client asked with Accept-Encoding). */
  | "tar+content-encoding"
  /** A .tar.gz body (`hubcache-archive=tar.gz`), as tfhub.dev answers. */
  | "tar.gz";

/** Which form to send: an explicit `hubcache-archive` wins, then Accept-Encoding, else plain tar. */
export function chooseArchiveEncoding(
  req: IncomingMessage,
  bodyForm: "tar" | "tar.gz" | undefined,
): ArchiveEncoding {
  if (bodyForm === "tar.gz") return "tar.gz";
  if (bodyForm === "tar") return "tar";
  const accept = String(req.headers["accept-encoding"] ?? "");
  const gzip = accept.split(",").some((part) => {
    const [name = "", ...params] = part.trim().toLowerCase().split(";");
    const q = params.find((p) => p.trim().startsWith("q="));
    return (name === "gzip" || name === "x-gzip") && (q === undefined || Number(q.trim().slice(2)) > 0);
  });
  return gzip ? "tar+content-encoding" : "tar";
}

/** Send the folder `dir` as a tar archive in the chosen form. */
export async function serveArchive(
  req: IncomingMessage,
  res: ServerResponse,
  dir: string,
  encoding: ArchiveEncoding,
  headers: Record<string, string>,
): Promise<void> {
  res.writeHead(200, {
    ...headers,
    "content-type": encoding === "tar.gz" ? "application/gzip" : "application/x-tar",
    ...(encoding === "tar+content-encoding" ? { "content-encoding": "gzip" } : {}),
    vary: "Accept, Accept-Encoding",
    "accept-ranges": "none",
  });
  if (req.method === "HEAD") {
    res.end();
    return;
  }
  const pack = tar.c({ cwd: dir, portable: true, gzip: false }, ["."]);
  const source = Readable.from(pack, { objectMode: false });
  const stages =
    encoding === "tar"
      ? pipeline(source, res)
      : pipeline(source, zlib.createGzip({ level: zlib.constants.Z_BEST_SPEED }), res);
  // The client went away, or a file could not be read: the connection is dropped, so the client
  // sees a cut (no tar end marker), never a short archive that looks whole.
  await stages.catch(() => res.destroy());
}
