/**
 * Streaming extraction: bytes in, a directory tree out. gzip'd or plain tar, detected from the
 * bytes (never from headers). gunzip runs with 1 MiB chunks (the biggest lever on speed), and
 * node-tar writes the files. Anything unsafe or broken rejects the whole archive; the caller owns
 * the target directory and deletes it on failure.
 */
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import zlib from "node:zlib";
import * as tar from "tar";
import { ErrorCode, HubcacheError } from "../errors.js";

export const GUNZIP_CHUNK_BYTES = 1 << 20;

export interface ExtractOptions {
  handle: string;
  /** Stop with ERR_HUBCACHE_TOO_LARGE past this many extracted bytes. */
  maxExtractBytes?: number | undefined;
  /** What came back, to explain a body that is not an archive. */
  contentType?: string | undefined;
  /** Called as compressed bytes arrive and as the archive is unpacked (bytes, entries so far). */
  onBytes?: ((compressed: number, uncompressed: number, entries: number) => void) | undefined;
  signal?: AbortSignal | undefined;
}

export interface ExtractResult {
  compressedBytes: number;
  tarBytes: number;
  entries: number;
}

type ArchiveKind = "gzip" | "tar";
const SNIFF_BYTES = 512;

function detectKind(head: Buffer): ArchiveKind | undefined {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return "gzip";
  // POSIX/GNU tar: "ustar" magic at offset 257. Old v7 tars have none; accept a header whose checksum is valid.
  if (head.length >= 262 && head.toString("latin1", 257, 262) === "ustar") return "tar";
  if (head.length >= 512 && validTarChecksum(head)) return "tar";
  return undefined;
}

function validTarChecksum(block: Buffer): boolean {
  const stored = parseInt(block.toString("latin1", 148, 156).replace(/\0.*$/, "").trim(), 8);
  if (!Number.isFinite(stored)) return false;
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : (block[i] ?? 0);
  return sum === stored && block.subarray(0, 100).some((byte) => byte !== 0);
}

function describeBody(head: Buffer, contentType: string | undefined): string {
  if (head.length === 0) return "an empty body";
  const text = head
    .subarray(0, 80)
    .toString("utf8")
    .replace(/[^\x20-\x7e]+/g, " ")
    .trim();
  return `${contentType ? `${contentType}, ` : ""}starting with "${text}"`;
}

/** Read the first bytes, then hand back a byte stream that replays them followed by the rest. */
async function sniff(source: Readable): Promise<{ head: Buffer; stream: Readable }> {
  const iterator = source[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const chunks: Buffer[] = [];
  let length = 0;
  let done = false;
  while (length < SNIFF_BYTES) {
    const next = await iterator.next();
    if (next.done) {
      done = true;
      break;
    }
    chunks.push(next.value);
    length += next.value.length;
  }
  const head = Buffer.concat(chunks);
  async function* replay(): AsyncGenerator<Buffer> {
    if (head.length > 0) yield head;
    if (done) return;
    for (;;) {
      const next = await iterator.next();
      if (next.done) return;
      yield next.value;
    }
  }
  const stream = Readable.from(replay(), { objectMode: false, highWaterMark: 1 << 20 });
  stream.once("close", () => void iterator.return?.());
  return { head, stream };
}

const SAFE_TYPES = new Set(["File", "OldFile", "ContiguousFile", "Directory"]);

function entryProblem(entryPath: string, type: string): string | undefined {
  if (!SAFE_TYPES.has(type)) {
    const what: Record<string, string> = {
      SymbolicLink: "a symbolic link",
      Link: "a hard link",
      CharacterDevice: "a character device",
      BlockDevice: "a block device",
      FIFO: "a FIFO",
    };
    return `${what[type] ?? `an entry of type ${type}`} (${entryPath})`;
  }
  if (entryPath.startsWith("/") || /^[a-zA-Z]:[\\/]/.test(entryPath) || entryPath.startsWith("\\")) {
    return `an absolute path (${entryPath})`;
  }
  if (entryPath.split(/[\\/]/).includes("..")) return `a path with ".." (${entryPath})`;
  return undefined;
}

/** Extract `source` (a gzip'd or plain tar) into the existing directory `dir`. */
export async function extractArchive(
  body: Readable,
  dir: string,
  options: ExtractOptions,
): Promise<ExtractResult> {
  const { handle } = options;
  const { head, stream: source } = await sniff(body);
  const kind = detectKind(head);
  if (!kind) {
    body.destroy();
    throw new HubcacheError(
      ErrorCode.NOT_AN_ARCHIVE,
      `${handle} did not answer with a model archive: it sent ${describeBody(head, options.contentType)}.`,
      {
        handle,
        hint: "Check that the handle is a model URL (a sign-in or error page is not a model), that the model is public or you are signed in, and that a proxy is not rewriting the answer.",
      },
    );
  }

  let compressedBytes = 0;
  let tarBytes = 0;
  let entries = 0;
  let sawEndOfArchive = false;
  let problem: HubcacheError | undefined;
  const report = (): void => options.onBytes?.(compressedBytes, tarBytes, entries);
  const limit = options.maxExtractBytes;

  // Byte counting rides on 'data' listeners: no extra stream stage on the hot path.
  const gunzip = kind === "gzip" ? zlib.createGunzip({ chunkSize: GUNZIP_CHUNK_BYTES }) : undefined;
  const tarSource = gunzip ?? source;
  source.on("data", (chunk: Buffer) => {
    compressedBytes += chunk.length;
    if (!gunzip) tarBytes = compressedBytes;
    report();
  });
  gunzip?.on("data", (chunk: Buffer) => {
    tarBytes += chunk.length;
    report();
  });
  if (limit !== undefined) {
    tarSource.on("data", () => {
      if (tarBytes > limit && !problem) {
        problem = new HubcacheError(
          ErrorCode.TOO_LARGE,
          `${handle} unpacks to more than ${limit} bytes, the limit; extraction was stopped.`,
          { handle, hint: "Raise maxExtractBytes (HUBCACHE_MAX_EXTRACT_BYTES) if you trust this model." },
        );
        tarSource.destroy(problem);
      }
    });
  }

  const unpack = tar.x({
    cwd: dir,
    strict: true,
    preserveOwner: false,
    onReadEntry: (entry) => {
      sawEndOfArchive = false;
      entries++;
      const reason = entryProblem(entry.path, entry.type);
      if (reason && !problem) {
        problem = new HubcacheError(
          ErrorCode.UNSAFE_ARCHIVE,
          `The archive of ${handle} holds ${reason}; it was refused.`,
          {
            handle,
            hint: "Model archives hold only regular files and folders. Do not use this archive; tell its publisher.",
          },
        );
        unpack.abort(problem);
      }
    },
  });
  unpack.on("nullBlock", () => {
    sawEndOfArchive = true;
  });
  const closed = new Promise<void>((resolve, reject) => {
    unpack.on("close", () => resolve());
    unpack.on("error", reject);
  });
  closed.catch(() => undefined);

  try {
    const writable = unpack as unknown as NodeJS.WritableStream;
    if (gunzip) await pipeline(source, gunzip, writable, { signal: options.signal });
    else await pipeline(source, writable, { signal: options.signal });
    await closed;
  } catch (error) {
    throw problem ?? classifyExtractError(error, handle);
  }
  if (problem) throw problem;
  if (!sawEndOfArchive) {
    throw new HubcacheError(
      ErrorCode.TRUNCATED,
      `The archive of ${handle} ended without tar's end-of-archive marker: it was cut short.`,
      { handle, hint: "The download was interrupted or the host sent a partial file. Try again." },
    );
  }
  return { compressedBytes, tarBytes, entries };
}

function classifyExtractError(error: unknown, handle: string): unknown {
  if (error instanceof HubcacheError) return error;
  const code = (error as { code?: unknown }).code;
  const message = error instanceof Error ? error.message : String(error);
  if (code === "Z_BUF_ERROR" || /unexpected end of file/i.test(message) || /truncated/i.test(message)) {
    return new HubcacheError(ErrorCode.TRUNCATED, `The archive of ${handle} was cut short (${message}).`, {
      handle,
      hint: "The download was interrupted or the host sent a partial file. Try again.",
      cause: error,
    });
  }
  if (
    code === "Z_DATA_ERROR" ||
    code === "TAR_BAD_ARCHIVE" ||
    /incorrect (data|header) check/i.test(message)
  ) {
    return new HubcacheError(ErrorCode.CORRUPT, `The archive of ${handle} is corrupt (${message}).`, {
      handle,
      hint: "Try again; if it persists, the archive on the host is damaged.",
      cause: error,
    });
  }
  return error;
}
