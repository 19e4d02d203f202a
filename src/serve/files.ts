/**
 * One file of a cached model over HTTP: ETag, If-None-Match (304), Range (206, 416), If-Range,
 * content types, HEAD, for a file of any ModelFiles (a local entry, a bucket entry). Bytes are
 * streamed with backpressure, never buffered whole; a range is read as a range.
 */
import { createHash } from "node:crypto";
import { promises as fs } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import path from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { errnoCode } from "../errors.js";
import type { ModelFile, ModelFiles, PositionalFile } from "./model-files.js";
import { headerValue } from "./headers.js";

const CONTENT_TYPES: Record<string, string> = {
  ".json": "application/json",
  ".txt": "text/plain; charset=utf-8",
  ".pb": "application/octet-stream",
  ".bin": "application/octet-stream",
  ".tflite": "application/octet-stream",
};

export function contentTypeOf(file: string): string {
  return CONTENT_TYPES[path.extname(file).toLowerCase()] ?? "application/octet-stream";
}

/**
 * The file's path below `root`, or undefined when it would leave it (also through a symlink).
 * `relative` is "/"-separated and already checked segment by segment (request-path.ts).
 */
export async function fileInside(root: string, relative: string): Promise<string | undefined> {
  const candidate = path.resolve(root, ...relative.split("/"));
  if (candidate !== root && !candidate.startsWith(root + path.sep)) return undefined;
  try {
    const [realRoot, real] = await Promise.all([fs.realpath(root), fs.realpath(candidate)]);
    return real.startsWith(realRoot + path.sep) ? real : undefined;
  } catch (error) {
    if (errnoCode(error) === "ENOENT" || errnoCode(error) === "ENOTDIR") return undefined;
    throw error;
  }
}

/**
 * A strong validator for one file of the entry `hash`. When hubcache's record vouches for the file,
 * from the record's digest (CRC-32) and the size: the same wherever the entry is (a local folder, a
 * bucket, a copy of the cache) and across restarts, and new when the file's bytes change. Else
 * (entries Python wrote) from the size and what tells a rewrite (mtime, the object's version).
 */
export function fileEtag(hash: string, file: ModelFile): string {
  const size = file.size.toString(16);
  if (file.recordedCrc32 !== undefined) {
    const id = createHash("sha1").update(`${hash}\0${file.path}`).digest("hex").slice(0, 16);
    return `"${id}-${size}-${file.recordedCrc32}"`;
  }
  const id = createHash("sha1").update(`${hash}\0${file.path}\0${file.version}`).digest("hex").slice(0, 16);
  return `"${id}-${size}-${Math.floor(file.modifiedMs).toString(16)}"`;
}

/** Does an If-None-Match header match this ETag (weak comparison, `*` included)? */
export function etagMatches(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  if (header.trim() === "*") return true;
  const bare = etag.replace(/^W\//, "");
  return header.split(",").some((tag) => tag.trim().replace(/^W\//, "") === bare);
}

export type RangeAnswer = { start: number; end: number } | "unsatisfiable" | undefined;

/** One `bytes=` range of a `size`-byte file; several ranges or a malformed header: the whole file. */
export function parseRange(header: string | undefined, size: number): RangeAnswer {
  if (header === undefined) return undefined;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match) return undefined;
  const [, first = "", last = ""] = match;
  if (first === "" && last === "") return undefined;
  if (first === "") {
    const suffix = Number(last);
    if (suffix === 0) return "unsatisfiable";
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(first);
  const end = last === "" ? size - 1 : Math.min(Number(last), size - 1);
  if (start >= size || end < start) return "unsatisfiable";
  return { start, end };
}

export interface FileToServe {
  files: ModelFiles;
  /** The file, as `files.stat` found it. */
  file: ModelFile;
  /** Response headers every answer carries (CORS, Cache-Control). */
  headers: Record<string, string>;
}

/** Answer one request for a file; resolves when the response has ended or the client went away. */
export async function serveFile(
  req: IncomingMessage,
  res: ServerResponse,
  target: FileToServe,
): Promise<void> {
  const { file, files } = target;
  const etag = fileEtag(files.hash, file);
  const headers: Record<string, string> = {
    ...target.headers,
    etag,
    "last-modified": new Date(file.modifiedMs).toUTCString(),
    "accept-ranges": "bytes",
    "content-type": contentTypeOf(file.path),
    "x-content-type-options": "nosniff",
  };
  if (etagMatches(headerValue(req, "if-none-match"), etag)) {
    res.writeHead(304, headers).end();
    return;
  }
  const ifRange = headerValue(req, "if-range");
  const range =
    ifRange === undefined || ifRange === etag ? parseRange(headerValue(req, "range"), file.size) : undefined;
  if (range === "unsatisfiable") {
    res.writeHead(416, { ...headers, "content-range": `bytes */${file.size}`, "content-length": "0" }).end();
    return;
  }
  const start = range?.start ?? 0;
  const end = range?.end ?? file.size - 1;
  const length = Math.max(0, end - start + 1);
  // Opened before the status is sent, so a file that went away is a 404, not a cut.
  // A whole file is opened without a range: a bucket then checks its digest (GCS skips it on ranges).
  const sendsBody = req.method !== "HEAD" && length > 0;
  const body = !sendsBody
    ? undefined
    : files.openPositional
      ? await files.openPositional(file)
      : await files.open(file, range ? { start, end } : undefined);
  res.writeHead(range ? 206 : 200, {
    ...headers,
    "content-length": String(length),
    ...(range ? { "content-range": `bytes ${start}-${end}/${file.size}` } : {}),
  });
  if (body === undefined) {
    res.end();
    return;
  }
  const sent =
    body instanceof Readable
      ? pipeline(body, exactly(length), res)
      : sendPositional(body, res, { start, length, wholeSize: range ? undefined : file.size });
  await sent.catch(
    () => res.destroy(), // the client went away, or the file could not be read: drop the connection
  );
}

/** The bytes read at a time from a positional file; two such buffers per response. */
const SEND_BLOCK_BYTES = 1 << 20;

/**
 * `length` bytes of `file` from `start`, read into two buffers taken in turn: one is read into while
 * the other is being written, and a buffer is read into again only once the socket has taken all of
 * it. No memory is allocated per read (a stream allocates 1 MiB per read, and the mirror's CPU went to
 * the page faults and garbage collections of that: 160 against 210 ms per 256 MiB sent), and a slow
 * client holds two buffers, no more. A file that is shorter than it was, or (sent whole) has another
 * size before its last block goes, fails the response before its last bytes, as `exactly` does for
 * a stream.
 */
async function sendPositional(
  file: PositionalFile,
  res: ServerResponse,
  part: { start: number; length: number; wholeSize: number | undefined },
): Promise<void> {
  let closed!: () => void;
  const gone = new Promise<void>((resolve) => (closed = resolve));
  res.once("close", closed);
  try {
    const size = Math.min(SEND_BLOCK_BYTES, part.length);
    const buffers = [Buffer.allocUnsafeSlow(size), Buffer.allocUnsafeSlow(size)];
    const written: (Promise<void> | undefined)[] = [undefined, undefined];
    let sent = 0;
    for (let turn = 0; sent < part.length; turn = 1 - turn) {
      const buffer = buffers[turn] as Buffer;
      await Promise.race([written[turn], gone]);
      if (res.destroyed) throw new Error("the client went away");
      const read = await file.read(buffer, Math.min(size, part.length - sent), part.start + sent);
      if (read === 0) throw new Error(`${sent} bytes, ${part.length} expected`);
      sent += read;
      const last = sent === part.length;
      // Checked before the last bytes go: once they have, the client holds a body that looks whole.
      if (last && part.wholeSize !== undefined && (await file.size()) !== part.wholeSize) {
        throw new Error("the file changed while it was sent");
      }
      const chunk = buffer.subarray(0, read);
      if (last) {
        // The last bytes go only once the others have (so "finished" means every byte was handed
        // over), and end the response in the same step: a client that hangs up as soon as it has
        // them finds the response finished (the access log says so), not cut.
        await Promise.race([written[1 - turn], gone]);
        if (res.destroyed) throw new Error("the client went away");
      }
      const write = new Promise<void>((resolve, reject) =>
        res.write(chunk, (error) => (error ? reject(error) : resolve())),
      );
      if (last) res.end();
      // A failed write is seen when its buffer comes round again (or at the end), not unhandled.
      write.catch(() => undefined);
      written[turn] = write;
    }
    let delivered = false;
    await Promise.race([
      Promise.all(written.map((write) => write ?? Promise.resolve())).then(() => (delivered = true)),
      gone,
    ]);
    if (!delivered) throw new Error("the client went away");
  } finally {
    res.off("close", closed);
    await file.close().catch(() => undefined);
  }
}

/**
 * Passes `length` bytes through, and fails when the source has more or fewer (it changed under us).
 * The latest chunk is held until the next one comes or the source has ended cleanly, so a source
 * that fails at its end (a bucket's digest check, a short file) cuts the body before its last bytes:
 * the client never holds a body that looks whole. The last chunk then ends the response at once.
 */
export function exactly(length: number): Transform {
  let seen = 0;
  let held: Buffer | undefined;
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      seen += chunk.length;
      if (seen > length) {
        done(new Error(`more than the ${length} bytes expected`));
        return;
      }
      const previous = held;
      held = chunk;
      done(undefined, previous);
    },
    flush(done) {
      done(seen === length ? undefined : new Error(`${seen} bytes, ${length} expected`), held);
    },
  });
}
