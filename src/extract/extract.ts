/**
 * Streaming extraction: bytes in, a directory tree out. gzip'd or plain tar, detected from the
 * bytes (never from headers). Inflate runs with 2 MiB chunks (the biggest lever on speed), on raw
 * deflate: gzip's framing and CRC are checked here (gzip-frame.ts). The pipeline: body -> ByteCounter
 * -> [GzipFrame -> Coalescer -> inflate -> Handoff -> TarHeadCheck] -> ExtractGuard (byte
 * and disk limits) -> MemberCheck (every member a file or folder under its full name, maxFiles)
 * -> node-tar's Unpack, which writes the files (UnpackRun: what hubcache relies on). Anything
 * unsafe or broken rejects the whole archive; the caller owns the target directory and deletes it
 * on failure.
 */
import { type Hash, createHash } from "node:crypto";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import zlib from "node:zlib";
import type * as Tar from "tar";
import { ErrorCode, HubcacheError } from "../errors.js";
import {
  type ArchiveKind,
  TarHeadCheck,
  detectKind,
  notATarError,
  notAnArchiveError,
  sniff,
} from "./archive-kind.js";
import { ByteCounter, Coalescer, Handoff } from "./byte-streams.js";
import { TRUNCATED_HINT, classifyExtractError, unsafeArchiveError } from "./extract-errors.js";
import { ExtractGuard, type GuardLimits, planGuard } from "./extract-guard.js";
import { GzipFrame } from "./gzip-frame.js";
import { DEFAULT_MAX_FILES, MemberCheck } from "./member-check.js";
import { UnpackRun } from "./unpack.js";

export { describeBody } from "./archive-kind.js";
export { classifyExtractError } from "./extract-errors.js";
export { entryProblem } from "./unpack.js";
export { DEFAULT_MAX_FILES } from "./member-check.js";

export const INFLATE_CHUNK_BYTES = 2 << 20;
const COALESCE_BYTES = 1 << 20;
const COALESCE_WAIT_MS = 20;
/** How many members node-tar may have in flight before MemberCheck waits for them to be written. */
const MEMBERS_IN_FLIGHT = 1024;

export interface ExtractOptions {
  handle: string;
  /** Stop with ERR_HUBCACHE_TOO_LARGE past this many extracted (tar) bytes. */
  maxExtractBytes?: number | undefined;
  /**
   * Keep at least this many bytes free on the target's disk (ERR_HUBCACHE_DISK_FULL otherwise).
   * Default: 5 % of the filesystem, at most 1 GiB. 0 turns the free-space guard off.
   */
  minFreeBytes?: number | undefined;
  /**
   * Stop with ERR_HUBCACHE_TOO_LARGE past this many files and folders. Default DEFAULT_MAX_FILES
   * (100,000); settings: HUBCACHE_MAX_FILES.
   */
  maxFiles?: number | undefined;
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
  /** With `digests`: SHA-256 (hex) of the bytes received (the archive as sent). */
  archiveSha256?: string | undefined;
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
  const { handle } = options;
  let tar: typeof Tar;
  let limits: GuardLimits;
  let sniffed: Awaited<ReturnType<typeof sniff>>;
  try {
    tar = await loadTar();
    // Refuse to start on a disk that is already nearly full.
    limits = await planGuard(handle, dir, options.maxExtractBytes, options.minFreeBytes);
    sniffed = await sniff(source);
  } catch (error) {
    source.destroy();
    throw classifyExtractError(error, handle);
  }
  const kind = detectKindOrThrow(sniffed.head, source, options);
  const progress = new Progress(kind, options.onBytes);
  const archiveHash = options.digests ? createHash("sha256") : undefined;
  const crc32ByPath = options.digests ? new Map<string, number>() : undefined;
  const { stages, gzip } = pipelineStages(kind, limits, progress, handle, archiveHash);
  const run = new UnpackRun(tar, dir, handle);
  const check = new MemberCheck({
    handle,
    maxFiles: options.maxFiles ?? DEFAULT_MAX_FILES,
    sink: run.unpack,
    reported: () => (run.failed ? undefined : run.entries),
    pauseEvery: MEMBERS_IN_FLIGHT,
    whenWritten: (members) => run.whenWritten(members),
    crc32ByPath,
    streamCrc: gzip !== undefined,
  });
  run.expected = check.expected;
  // Failing the last stage fails the pipeline (the first may have finished already).
  run.stop = (error) => check.destroy(error);
  progress.entries = () => run.entries;
  try {
    const streams = [sniffed.stream, ...stages, check] as unknown[];
    await pipeline(streams as NodeJS.ReadWriteStream[], { signal: options.signal });
    await run.settled;
  } catch (error) {
    // Let tar finish (or drop) what it already accepted, so nothing is written into `dir` later.
    await run.finish();
    throw run.problem ?? classifyExtractError(error, handle);
  }
  if (gzip) gzip.frame.verifyEnd(gzip.inflate.bytesWritten, check.streamCrc ?? 0, check.streamBytes);
  checkOutcome(run, check, handle);
  return {
    compressedBytes: progress.compressed,
    tarBytes: progress.tar,
    entries: run.entries,
    ...(crc32ByPath && { crc32ByPath }),
    ...(archiveHash && { archiveSha256: archiveHash.digest("hex") }),
  };
}

function detectKindOrThrow(head: Buffer, source: Readable, options: ExtractOptions): ArchiveKind {
  const kind = detectKind(head);
  if (kind) return kind;
  source.destroy();
  throw notAnArchiveError(options.handle, head, options.contentType);
}

/** Byte and entry counts so far, reported through onBytes. */
class Progress {
  compressed = 0;
  tar = 0;
  entries: () => number = () => 0;
  constructor(
    private readonly kind: ArchiveKind,
    private readonly onBytes: ExtractOptions["onBytes"],
  ) {}
  network(total: number): void {
    this.compressed = total;
    if (this.kind === "tar") this.tar = total;
    this.report();
  }
  unpacked(total: number): void {
    this.tar = total;
    this.report();
  }
  private report(): void {
    this.onBytes?.(this.compressed, this.tar, this.entries());
  }
}

interface Stages {
  stages: [ByteCounter, ...NodeJS.ReadWriteStream[]];
  /** For a gzip'd archive: its framing and the inflater, checked against each other at the end. */
  gzip?: { frame: GzipFrame; inflate: zlib.InflateRaw } | undefined;
}

/** The stages between the body and node-tar: count, gunzip (if gzip'd), check it is a tar, guard. */
function pipelineStages(
  kind: ArchiveKind,
  limits: GuardLimits,
  progress: Progress,
  handle: string,
  archiveHash: Hash | undefined,
): Stages {
  const network = new ByteCounter((total) => progress.network(total), archiveHash);
  const stages: [ByteCounter, ...NodeJS.ReadWriteStream[]] = [network];
  let gzip: Stages["gzip"];
  if (kind === "gzip") {
    // Raw deflate: the gzip framing and its CRC check are done here (gzip-frame.ts), not by zlib.
    gzip = {
      frame: new GzipFrame(handle),
      inflate: zlib.createInflateRaw({ chunkSize: INFLATE_CHUNK_BYTES }),
    };
    stages.push(gzip.frame);
    stages.push(new Coalescer(COALESCE_BYTES, COALESCE_WAIT_MS));
    stages.push(gzip.inflate);
    // zlib hands its output over synchronously: without this, inflating and unpacking take turns.
    stages.push(new Handoff(INFLATE_CHUNK_BYTES));
    stages.push(new TarHeadCheck((inner) => notATarError(handle, inner)));
  } else {
    // Network reads (64 KiB) joined into 1 MiB blocks: tar then writes each file in big writes.
    stages.push(new Coalescer(COALESCE_BYTES, COALESCE_WAIT_MS));
  }
  stages.push(new ExtractGuard(limits, (total) => progress.unpacked(total)));
  return { stages, gzip };
}

/** After tar has ended: any refusal or tar error, and the end-of-archive marker. */
function checkOutcome(run: UnpackRun, check: MemberCheck, handle: string): void {
  if (run.problem) throw run.problem;
  if (run.tarError !== undefined) throw classifyExtractError(run.tarError, handle);
  if (run.entries !== check.members) {
    const skipped = check.expected[0]?.path ?? "";
    throw unsafeArchiveError(handle, `members tar skips (${check.members - run.entries}, from ${skipped})`);
  }
  if (!run.sawEndOfArchive) {
    throw new HubcacheError(
      ErrorCode.TRUNCATED,
      `The archive of ${handle} ended without tar's end-of-archive marker: it was cut short.`,
      { handle, hint: TRUNCATED_HINT },
    );
  }
}
