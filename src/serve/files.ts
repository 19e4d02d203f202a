/**
 * One file of a cached model over HTTP: ETag, If-None-Match (304), Range (206, 416), If-Range,
 * content types, HEAD. Bytes are streamed from disk with backpressure, never buffered whole.
 */
import { createHash } from "node:crypto";
import { createReadStream, promises as fs } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { errnoCode } from "../errors.js";

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

/** A strong validator from what identifies the bytes: the entry, the path, the size and the mtime. */
export function fileEtag(entryHash: string, relative: string, size: number, mtimeMs: number): string {
  const id = createHash("sha1").update(`${entryHash}\0${relative}`).digest("hex").slice(0, 16);
  return `"${id}-${size.toString(16)}-${Math.floor(mtimeMs).toString(16)}"`;
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
  file: string;
  /** The path inside the entry, for the ETag. */
  relative: string;
  entryHash: string;
  /** Response headers every answer carries (CORS, Cache-Control). */
  headers: Record<string, string>;
}

/** Answer one request for a file; resolves when the response has ended or the client went away. */
export async function serveFile(
  req: IncomingMessage,
  res: ServerResponse,
  target: FileToServe,
): Promise<void> {
  const stat = await fs.stat(target.file);
  const etag = fileEtag(target.entryHash, target.relative, stat.size, stat.mtimeMs);
  const headers: Record<string, string> = {
    ...target.headers,
    etag,
    "last-modified": stat.mtime.toUTCString(),
    "accept-ranges": "bytes",
    "content-type": contentTypeOf(target.file),
    "x-content-type-options": "nosniff",
  };
  if (etagMatches(header(req, "if-none-match"), etag)) {
    res.writeHead(304, headers).end();
    return;
  }
  const ifRange = header(req, "if-range");
  const range =
    ifRange === undefined || ifRange === etag ? parseRange(header(req, "range"), stat.size) : undefined;
  if (range === "unsatisfiable") {
    res.writeHead(416, { ...headers, "content-range": `bytes */${stat.size}`, "content-length": "0" }).end();
    return;
  }
  const start = range?.start ?? 0;
  const end = range?.end ?? stat.size - 1;
  const length = Math.max(0, end - start + 1);
  res.writeHead(range ? 206 : 200, {
    ...headers,
    "content-length": String(length),
    ...(range ? { "content-range": `bytes ${start}-${end}/${stat.size}` } : {}),
  });
  if (req.method === "HEAD" || length === 0) {
    res.end();
    return;
  }
  await pipeline(createReadStream(target.file, { start, end, highWaterMark: 1 << 20 }), res).catch(
    () => res.destroy(), // the client went away, or the file could not be read: drop the connection
  );
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(", ") : value;
}
