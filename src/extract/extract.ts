/**
 * Streaming extraction: bytes in, a directory tree out. gzip'd or plain tar, detected from the
 * bytes (never from headers). gunzip runs with 1 MiB chunks (the biggest lever on speed), and
 * node-tar writes the files. Anything unsafe or broken rejects the whole archive; the caller owns
 * the target directory and deletes it on failure.
 *
 * Safety rests on three node-tar 7 facts, each checked by test/archive-safety.test.ts:
 * - `filter` runs while a header is parsed, before the entry is queued for writing; an entry it
 *   refuses is never written. (`onReadEntry` runs too late: tar still writes that entry.)
 * - `strict: true` turns every tar warning (bad checksum, truncated input...) into an error.
 * - after any failure, ending the parser makes tar finish what it has queued and emit "end";
 *   extractArchive waits for that, so no write lands in the directory after it returns. The one
 *   exception is a target directory that is gone (tar's CwdError): then tar reports an "error" and
 *   never ends, and extractArchive settles on that error (nothing can land in a missing directory).
 * - the archive must end with tar's end-of-archive marker, two zero blocks (tar's "eof" event).
 */
import { type Hash, createHash } from "node:crypto";
import path from "node:path";
import { Readable, Transform, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import zlib from "node:zlib";
import type * as Tar from "tar";
import { ErrorCode, HubcacheError, LockLost, RestartRequired, errnoCode } from "../errors.js";
import { checkIntervalBytes, defaultReserveBytes, diskSpace } from "./disk-space.js";

export const GUNZIP_CHUNK_BYTES = 1 << 20;
const COALESCE_BYTES = 256 * 1024;
const COALESCE_WAIT_MS = 20;

export interface ExtractOptions {
  handle: string;
  /** Stop with ERR_HUBCACHE_TOO_LARGE past this many extracted (tar) bytes. */
  maxExtractBytes?: number | undefined;
  /**
   * Keep at least this many bytes free on the target's disk (ERR_HUBCACHE_DISK_FULL otherwise).
   * Default: 5 % of the filesystem, at most 1 GiB. 0 turns the free-space guard off.
   */
  minFreeBytes?: number | undefined;
  /** What came back, to explain a body that is not an archive. */
  contentType?: string | undefined;
  /** Called as compressed bytes arrive and as the archive is unpacked (bytes, entries so far). */
  onBytes?: ((compressed: number, uncompressed: number, entries: number) => void) | undefined;
  signal?: AbortSignal | undefined;
  /** Also compute the archive's SHA-256 and each file's CRC-32 while extracting (integrity records). */
  digests?: boolean | undefined;
}

export interface ExtractResult {
  compressedBytes: number;
  tarBytes: number;
  entries: number;
  /** With `digests`: each file's CRC-32, by its "/"-separated path below the directory. */
  crc32ByPath?: Map<string, number> | undefined;
  /** With `digests`: SHA-256 (hex) of the bytes received (the compressed archive). */
  archiveSha256?: string | undefined;
}

/** Passes a file's bytes through to tar's writer, computing their CRC-32 (zlib's, native). */
class Crc32Tap extends Transform {
  private crc = 0;
  constructor(private readonly done: (crc: number) => void) {
    super();
  }
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.crc = zlib.crc32(chunk, this.crc);
    callback(null, chunk);
  }
  override _flush(callback: TransformCallback): void {
    this.done(this.crc);
    callback();
  }
}

type ArchiveKind = "gzip" | "tar";
const SNIFF_BYTES = 512;

function detectKind(head: Buffer): ArchiveKind | undefined {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return "gzip";
  if (looksLikeTar(head)) return "tar";
  return undefined;
}

/** POSIX/GNU tar: "ustar" magic at offset 257 and a valid header checksum (old v7 tars have no magic). */
function looksLikeTar(block: Buffer): boolean {
  if (block.length < 512) return false;
  return validTarChecksum(block);
}

function validTarChecksum(block: Buffer): boolean {
  const stored = parseInt(block.toString("latin1", 148, 156).replace(/\0.*$/, "").trim(), 8);
  if (!Number.isFinite(stored)) return false;
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : (block[i] ?? 0);
  return sum === stored && block.subarray(0, 100).some((byte) => byte !== 0);
}

/** "text/html, starting with "<!DOCTYPE html>..."" or "an empty body", for error messages. */
export function describeBody(head: Buffer, contentType: string | undefined): string {
  const type = contentType ? `Content-Type ${contentType}` : "no Content-Type";
  if (head.length === 0) return `an empty body (${type})`;
  const text = head
    .subarray(0, 80)
    .toString("utf8")
    .replace(/[^\x20-\x7e]+/g, " ")
    .trim();
  return `${head.length >= SNIFF_BYTES ? "" : `${head.length} bytes, `}${type}, starting with "${text}"`;
}

const NOT_AN_ARCHIVE_HINT =
  "Check that the handle is a model URL (a sign-in, consent or error page is not a model), that the model is public or your credentials are set, and that no proxy or captive portal rewrites the answer.";

/** Read the first bytes, then hand back a stream that replays them followed by the rest. */
async function sniff(source: Readable): Promise<{ head: Buffer; stream: AsyncIterable<Buffer> }> {
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
    const chunk = Buffer.isBuffer(next.value) ? next.value : Buffer.from(next.value);
    chunks.push(chunk);
    length += chunk.length;
  }
  const head = Buffer.concat(chunks);
  async function* replay(): AsyncGenerator<Buffer> {
    try {
      if (head.length > 0) yield head;
      if (done) return;
      for (;;) {
        const next = await iterator.next();
        if (next.done) return;
        yield next.value;
      }
    } finally {
      // Stopped early (an error downstream): release the source (and its connection).
      if (!done) await iterator.return?.();
    }
  }
  return { head, stream: replay() };
}

/**
 * Joins network reads (~64 KiB each) into blocks of up to `size` bytes before gunzip, which makes
 * one thread-pool round trip per input chunk: 10-15 % faster end to end (measured, npm run bench).
 * Bytes are never held back longer than `maxWaitMs`, so a slow link still shows progress.
 */
class Coalescer extends Transform {
  private parts: Buffer[] = [];
  private pending = 0;
  private timer: NodeJS.Timeout | undefined;
  constructor(
    private readonly size: number,
    private readonly maxWaitMs: number,
  ) {
    super();
  }
  private release(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.pending === 0) return;
    const block =
      this.parts.length === 1 ? (this.parts[0] as Buffer) : Buffer.concat(this.parts, this.pending);
    this.parts = [];
    this.pending = 0;
    this.push(block);
  }
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.parts.push(chunk);
    this.pending += chunk.length;
    if (this.pending >= this.size) this.release();
    else this.timer ??= setTimeout(() => this.release(), this.maxWaitMs);
    callback();
  }
  override _flush(callback: TransformCallback): void {
    this.release();
    callback();
  }
  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (this.timer) clearTimeout(this.timer);
    callback(error);
  }
}

class ByteCounter extends Transform {
  bytes = 0;
  constructor(
    private readonly onChunk: (total: number) => void,
    private readonly hash?: Hash | undefined,
  ) {
    super();
  }
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    this.hash?.update(chunk);
    this.onChunk(this.bytes);
    callback(null, chunk);
  }
}

/** After gunzip: the first 512 bytes must be a tar header, else the gzip held something else. */
class TarHeadCheck extends Transform {
  private head: Buffer[] = [];
  private headBytes = 0;
  private checked = false;
  constructor(private readonly fail: (head: Buffer) => Error) {
    super();
  }
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (this.checked) {
      callback(null, chunk);
      return;
    }
    this.head.push(chunk);
    this.headBytes += chunk.length;
    if (this.headBytes < 512) {
      callback();
      return;
    }
    this.release(callback);
  }
  override _flush(callback: TransformCallback): void {
    if (this.checked) callback();
    else this.release(callback);
  }
  private release(callback: TransformCallback): void {
    const all = Buffer.concat(this.head);
    this.head = [];
    this.checked = true;
    const endOfArchive = all.length >= 512 && all.subarray(0, 512).every((byte) => byte === 0);
    if (!looksLikeTar(all) && !endOfArchive) {
      callback(this.fail(all));
      return;
    }
    callback(null, all);
  }
}

interface GuardLimits {
  handle: string;
  dir: string;
  /** Explicit maxExtractBytes. */
  maxBytes: number | undefined;
  /** Free-space reserve; 0 = off. */
  reserve: number;
  /** Bytes that fit before the reserve is reached, as measured when extraction started. */
  fitBytes: number | undefined;
  freeAtStart: number | undefined;
  onBytes: (total: number) => void;
}

/** Counts the tar bytes going to node-tar and stops before a limit or a nearly full disk is crossed. */
class ExtractGuard extends Transform {
  bytes = 0;
  private sinceCheck = 0;
  private readonly interval: number;
  constructor(private readonly limits: GuardLimits) {
    super();
    this.interval = checkIntervalBytes(limits.reserve);
  }
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    const { maxBytes, fitBytes, reserve } = this.limits;
    const next = this.bytes + chunk.length;
    if (maxBytes !== undefined && next > maxBytes) {
      callback(tooLargeError(this.limits.handle, maxBytes));
      return;
    }
    if (fitBytes !== undefined && next > fitBytes) {
      callback(diskGuardError(this.limits, this.limits.freeAtStart ?? 0));
      return;
    }
    this.sinceCheck += chunk.length;
    if (reserve > 0 && this.sinceCheck >= this.interval) {
      this.sinceCheck = 0;
      void diskSpace(this.limits.dir).then((space) => {
        if (space && space.free - chunk.length < reserve) {
          callback(diskGuardError(this.limits, space.free));
          return;
        }
        this.pass(next, chunk, callback);
      });
      return;
    }
    this.pass(next, chunk, callback);
  }
  private pass(next: number, chunk: Buffer, callback: TransformCallback): void {
    this.bytes = next;
    this.limits.onBytes(next);
    callback(null, chunk);
  }
}

function tooLargeError(handle: string, limit: number): HubcacheError {
  return new HubcacheError(
    ErrorCode.TOO_LARGE,
    `${handle} unpacks to more than ${limit} bytes, the limit (maxExtractBytes); extraction was stopped.`,
    {
      handle,
      hint: "Raise the limit (--max-extract-bytes, HUBCACHE_MAX_EXTRACT_BYTES or the maxExtractBytes option) if you trust this model; an archive that unpacks to far more than it weighs may be a decompression bomb.",
    },
  );
}

function diskGuardError(limits: GuardLimits, free: number): HubcacheError {
  return new HubcacheError(
    ErrorCode.DISK_FULL,
    `Not enough disk space for ${limits.handle} in ${limits.dir}: ${free} bytes free and ${limits.reserve} must stay free; extraction was stopped before the disk was full.`,
    {
      handle: limits.handle,
      hint: "Free some space, or point TFHUB_CACHE_DIR at a larger disk. HUBCACHE_MIN_FREE_BYTES (the minFreeBytes option) sets how much hubcache leaves free.",
    },
  );
}

const SAFE_TYPES = new Set(["File", "OldFile", "ContiguousFile", "Directory"]);

/** Why an entry makes the whole archive unsafe, or undefined if it is a plain file or folder. */
export function entryProblem(entryPath: string, type: string): string | undefined {
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
  if (entryPath.startsWith("/") || entryPath.startsWith("\\") || /^[a-zA-Z]:/.test(entryPath)) {
    return `an absolute path (${entryPath})`;
  }
  if (entryPath.split(/[\\/]/).includes("..")) return `a path with ".." (${entryPath})`;
  return undefined;
}

let tarModule: Promise<typeof Tar> | undefined;

/**
 * node-tar, imported on first use: a warm resolve never extracts, and tar is the largest part of
 * hubcache's import time. Callers about to download call this first, so the import overlaps the
 * request (and its redirects) instead of adding to it.
 */
export function loadTar(): Promise<typeof Tar> {
  tarModule ??= import("tar");
  return tarModule;
}

/** Extract `source` (a gzip'd or plain tar) into the existing directory `dir`. */
export async function extractArchive(
  source: Readable,
  dir: string,
  options: ExtractOptions,
): Promise<ExtractResult> {
  const tar = await loadTar().catch((error: unknown) => {
    source.destroy();
    throw error;
  });
  const { handle } = options;

  // Refuse to start on a disk that is already nearly full.
  const space = options.minFreeBytes === 0 ? undefined : await diskSpace(dir);
  const reserve = options.minFreeBytes ?? (space ? defaultReserveBytes(space.total) : 0);
  const guard: GuardLimits = {
    handle,
    dir,
    maxBytes: options.maxExtractBytes,
    reserve: space ? reserve : 0,
    fitBytes: space && reserve > 0 ? space.free - reserve : undefined,
    freeAtStart: space?.free,
    onBytes: () => undefined,
  };
  if (guard.fitBytes !== undefined && guard.fitBytes <= 0) {
    source.destroy();
    throw diskGuardError(guard, guard.freeAtStart ?? 0);
  }

  let sniffed: Awaited<ReturnType<typeof sniff>>;
  try {
    sniffed = await sniff(source);
  } catch (error) {
    source.destroy();
    throw classifyExtractError(error, handle);
  }
  const { head, stream } = sniffed;
  const kind = detectKind(head);
  if (!kind) {
    source.destroy();
    throw new HubcacheError(
      ErrorCode.NOT_AN_ARCHIVE,
      `${handle} did not answer with a model archive (gzip'd or plain tar): it sent ${describeBody(head, options.contentType)}.`,
      { handle, hint: NOT_AN_ARCHIVE_HINT },
    );
  }

  let compressedBytes = 0;
  let tarBytes = 0;
  let entries = 0;
  let sawEndOfArchive = false;
  let problem: HubcacheError | undefined;
  let failed = false;
  const report = (): void => options.onBytes?.(compressedBytes, tarBytes, entries);

  const archiveHash = options.digests ? createHash("sha256") : undefined;
  const crc32ByPath = options.digests ? new Map<string, number>() : undefined;
  const network = new ByteCounter((total) => {
    compressedBytes = total;
    if (kind === "tar") tarBytes = total;
    report();
  }, archiveHash);
  const stages: NodeJS.ReadWriteStream[] = [network];
  if (kind === "gzip") {
    stages.push(new Coalescer(COALESCE_BYTES, COALESCE_WAIT_MS));
    stages.push(zlib.createGunzip({ chunkSize: GUNZIP_CHUNK_BYTES }));
    stages.push(
      new TarHeadCheck(
        (inner) =>
          new HubcacheError(
            ErrorCode.NOT_AN_ARCHIVE,
            `${handle} sent gzip data that does not hold a tar archive (it unpacks to ${describeBody(inner, undefined)}).`,
            { handle, hint: NOT_AN_ARCHIVE_HINT },
          ),
      ),
    );
  }
  guard.onBytes = (total) => {
    tarBytes = total;
    report();
  };
  stages.push(new ExtractGuard(guard));

  const unpack = tar.x({
    cwd: dir,
    strict: true,
    preserveOwner: false,
    // Never guess zstd/brotli from the bytes: only what was sniffed above is extracted.
    zstd: false,
    brotli: false,
    // Integrity records: each file's bytes pass a CRC-32 tap on their way to tar's file writer.
    ...(crc32ByPath && { transform: crc32Transform(dir, crc32ByPath) }),
    // Runs as each header is parsed, before tar queues the entry: a refused entry is never written.
    filter: (entryPath, entry) => {
      if (failed) return false;
      const readEntry = entry as Tar.ReadEntry;
      const reason = entryProblem(readEntry.path ?? entryPath, readEntry.type);
      if (reason) {
        failed = true;
        problem = new HubcacheError(
          ErrorCode.UNSAFE_ARCHIVE,
          `The archive of ${handle} holds ${reason}; the whole archive was refused.`,
          {
            handle,
            hint: "Model archives hold only regular files and folders (TF Hub refuses links too). Do not use this archive; tell its publisher.",
          },
        );
        // Stop the data; tar finishes only entries it had already accepted.
        network.destroy(problem);
        return false;
      }
      entries++;
      // No setuid/setgid/sticky bits and no world-writable files in a shared cache; owner can always read.
      if (typeof readEntry.mode === "number") {
        readEntry.mode = (readEntry.mode & 0o755) | (readEntry.type === "Directory" ? 0o700 : 0o600);
      }
      return true;
    },
  });
  // The end-of-archive marker is two zero blocks: tar's parser says "eof" after the second (its
  // "nullBlock" event is the first, which alone is a cut-short archive). It reads nothing after it.
  unpack.on("eof", () => {
    sawEndOfArchive = true;
  });
  let tarError: unknown;
  // tar emits "end" once every accepted entry is on disk. Not "close": stream.pipeline emits a
  // "close" of its own on a failed non-standard stream, long before tar is done writing.
  // A target directory that is gone (tar's CwdError: another process removed it) is the one failure
  // after which tar never emits "end": it reports an "error" and leaves the entry pending. Nothing
  // more can be written into a directory that is not there, so that error settles it too.
  const settled = new Promise<void>((resolve) => {
    unpack.on("end", () => resolve());
    unpack.on("abort", () => resolve());
    // tar reports each problem as an "error" event, also after the pipeline is over: keep a listener.
    unpack.on("error", (error: unknown) => {
      tarError ??= error;
      if (isCwdError(error)) {
        failed = true;
        // Stop the data too, so the pipeline fails rather than wait for tar to read on.
        network.destroy(error as Error);
        resolve();
      }
    });
  });

  try {
    const streams = [Readable.from(stream), ...stages, unpack as unknown as NodeJS.WritableStream] as const;
    await pipeline(streams as unknown as NodeJS.ReadWriteStream[], { signal: options.signal });
    await settled;
  } catch (error) {
    failed = true;
    // Let tar finish (or drop) what it already accepted, so nothing is written into `dir` later.
    try {
      unpack.end();
    } catch {
      // tar reports through "error", which is handled above.
    }
    await settled;
    throw problem ?? classifyExtractError(error, handle);
  }
  if (problem) throw problem;
  if (tarError !== undefined) throw classifyExtractError(tarError, handle);
  if (!sawEndOfArchive) {
    throw new HubcacheError(
      ErrorCode.TRUNCATED,
      `The archive of ${handle} ended without tar's end-of-archive marker: it was cut short.`,
      { handle, hint: "The download was interrupted or the host sent a partial file. Try again." },
    );
  }
  return {
    compressedBytes,
    tarBytes,
    entries,
    ...(crc32ByPath && { crc32ByPath }),
    ...(archiveHash && { archiveSha256: archiveHash.digest("hex") }),
  };
}

/** tar's `transform` for regular files: a CRC-32 tap that stores the file's CRC by its path. */
function crc32Transform(dir: string, into: Map<string, number>): (entry: Tar.ReadEntry) => Tar.ReadEntry {
  const root = path.resolve(dir);
  return (entry) => {
    const file = path.relative(root, String(entry.absolute ?? path.resolve(root, entry.path)));
    const key = file.split(path.sep).join("/");
    // tar pipes the entry into what this returns, then that into its file writer.
    return new Crc32Tap((crc) => into.set(key, crc)) as unknown as Tar.ReadEntry;
  };
}

const TRUNCATED_HINT = "The download was interrupted or the host sent a partial file. Try again.";

/** tar's "cannot use the target directory" error (it is missing, or not a directory). */
function isCwdError(error: unknown): boolean {
  return error instanceof Error && error.name === "CwdError";
}

/** Turn whatever the extraction pipeline threw into a coded error (or the internal restart signal). */
export function classifyExtractError(
  error: unknown,
  handle: string,
): HubcacheError | RestartRequired | LockLost {
  if (error instanceof HubcacheError || error instanceof RestartRequired || error instanceof LockLost) {
    return error;
  }
  const code = errnoCode(error);
  const tarCode = (error as { tarCode?: unknown } | null)?.tarCode;
  const message = error instanceof Error ? error.message : String(error);
  if (error instanceof Error && error.name === "AbortError") {
    return new HubcacheError(ErrorCode.ABORTED, `Downloading ${handle} was aborted.`, {
      handle,
      hint: "The caller's AbortSignal fired; nothing was cached.",
      cause: error,
    });
  }
  if (isCwdError(error)) {
    return new HubcacheError(
      ErrorCode.IO,
      `The folder ${handle} was being extracted into is gone (${code ?? message}); extraction was stopped.`,
      {
        handle,
        hint: "Another process removed it, e.g. one that took this download over as stalled (it finishes the download). Otherwise, check that nothing cleans the cache directory while hubcache runs, and try again.",
        cause: error,
      },
    );
  }
  if (code === "ENOSPC" || code === "EDQUOT") {
    return new HubcacheError(
      ErrorCode.DISK_FULL,
      `The disk filled up while ${handle} was being extracted (${code}).`,
      {
        handle,
        hint: "Free some space, or point TFHUB_CACHE_DIR at a larger disk. The partial download was removed.",
        cause: error,
      },
    );
  }
  if (code === "EACCES" || code === "EPERM" || code === "EROFS") {
    return new HubcacheError(
      ErrorCode.NOT_WRITABLE,
      `${handle} could not be written into the cache (${code}).`,
      {
        handle,
        hint: "Set TFHUB_CACHE_DIR (or --cache-dir / the cacheDir option) to a directory you can write.",
        cause: error,
      },
    );
  }
  if (
    code === "Z_BUF_ERROR" ||
    /unexpected end of file/i.test(message) ||
    (tarCode === "TAR_BAD_ARCHIVE" && /truncated/i.test(message))
  ) {
    return new HubcacheError(ErrorCode.TRUNCATED, `The archive of ${handle} was cut short (${message}).`, {
      handle,
      hint: TRUNCATED_HINT,
      cause: error,
    });
  }
  if (
    (typeof code === "string" && code.startsWith("Z_")) ||
    tarCode === "TAR_BAD_ARCHIVE" ||
    tarCode === "TAR_ENTRY_INVALID" ||
    tarCode === "TAR_ABORT"
  ) {
    return new HubcacheError(ErrorCode.CORRUPT, `The archive of ${handle} is corrupt (${message}).`, {
      handle,
      hint: "Try again; if it persists, the archive on the host is damaged (tell its publisher).",
      cause: error,
    });
  }
  if (tarCode === "TAR_ENTRY_ERROR" && /too deep|excessively deep/i.test(message)) {
    return new HubcacheError(
      ErrorCode.UNSAFE_ARCHIVE,
      `The archive of ${handle} nests folders too deeply; the whole archive was refused.`,
      { handle, hint: "Do not use this archive; tell its publisher.", cause: error },
    );
  }
  return new HubcacheError(ErrorCode.IO, `Extracting ${handle} failed (${code ?? message}).`, {
    handle,
    hint: "Check the cache directory's disk and permissions, then try again.",
    cause: error,
  });
}
