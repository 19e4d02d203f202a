/**
 * The byte limits of an extraction: an explicit maxExtractBytes, and the free space that must stay
 * on the target's disk (checked at the start, then again every few MB as the archive unpacks).
 */
import { Transform, type TransformCallback } from "node:stream";
import { ErrorCode, HubcacheError } from "../errors.js";
import { checkIntervalBytes, defaultReserveBytes, diskSpace } from "./disk-space.js";

export interface GuardLimits {
  handle: string;
  dir: string;
  /** Explicit maxExtractBytes. */
  maxBytes: number | undefined;
  /** Free-space reserve; 0 = off. */
  reserve: number;
  /** Bytes that fit before the reserve is reached, as measured when extraction started. */
  fitBytes: number | undefined;
  freeAtStart: number | undefined;
}

/**
 * Measure the target's disk and work out the limits; throws ERR_HUBCACHE_DISK_FULL if the disk is
 * already too full to start. `minFreeBytes` 0 turns the free-space guard off.
 */
export async function planGuard(
  handle: string,
  dir: string,
  maxBytes: number | undefined,
  minFreeBytes: number | undefined,
): Promise<GuardLimits> {
  const space = minFreeBytes === 0 ? undefined : await diskSpace(dir);
  const reserve = minFreeBytes ?? (space ? defaultReserveBytes(space.total) : 0);
  const limits: GuardLimits = {
    handle,
    dir,
    maxBytes,
    reserve: space ? reserve : 0,
    fitBytes: space && reserve > 0 ? space.free - reserve : undefined,
    freeAtStart: space?.free,
  };
  if (limits.fitBytes !== undefined && limits.fitBytes <= 0) {
    throw diskGuardError(limits, limits.freeAtStart ?? 0);
  }
  return limits;
}

/**
 * The byte limits of one extraction, whoever writes its bytes (the tar stream through ExtractGuard,
 * or the files form's writers, several at once): maxExtractBytes, the room measured at the start,
 * and the free space checked again every few MB.
 */
export class DiskBudget {
  written = 0;
  /** The first limit crossed (set by a free-space check too). */
  problem: HubcacheError | undefined;
  private sinceCheck = 0;
  private readonly interval: number;
  constructor(
    private readonly limits: GuardLimits,
    private readonly onProblem: (problem: HubcacheError) => void = () => undefined,
  ) {
    this.interval = checkIntervalBytes(limits.reserve);
  }
  /**
   * Count `bytes` about to be written; throws the limit they cross. When a free-space check is due,
   * returns it: it settles once the disk was measured, with `problem` set if too little is free
   * (then onProblem was called). A writer may wait for it or let it fail the others later.
   */
  claim(bytes: number): Promise<void> | undefined {
    if (this.problem) throw this.problem;
    const { maxBytes, fitBytes, reserve } = this.limits;
    const next = this.written + bytes;
    if (maxBytes !== undefined && next > maxBytes) this.fail(tooLargeError(this.limits.handle, maxBytes));
    if (fitBytes !== undefined && next > fitBytes) {
      this.fail(diskGuardError(this.limits, this.limits.freeAtStart ?? 0));
    }
    this.written = next;
    this.sinceCheck += bytes;
    if (reserve === 0 || this.sinceCheck < this.interval) return undefined;
    this.sinceCheck = 0;
    return diskSpace(this.limits.dir).then((space) => {
      if (space && space.free - bytes < reserve) this.fail(diskGuardError(this.limits, space.free), false);
    });
  }
  /** Bytes that will be written again (a file started over). */
  release(bytes: number): void {
    this.written -= bytes;
  }
  private fail(problem: HubcacheError, raise = true): void {
    this.problem ??= problem;
    this.onProblem(this.problem);
    if (raise) throw this.problem;
  }
}

/** Counts the tar bytes going to node-tar and stops before a limit or a nearly full disk is crossed. */
export class ExtractGuard extends Transform {
  private readonly budget: DiskBudget;
  constructor(
    limits: GuardLimits,
    private readonly onBytes: (total: number) => void,
  ) {
    super();
    this.budget = new DiskBudget(limits);
  }
  get bytes(): number {
    return this.budget.written;
  }
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    let check: Promise<void> | undefined;
    try {
      check = this.budget.claim(chunk.length);
    } catch (error) {
      callback(error as Error);
      return;
    }
    // The tar stream waits for a due free-space check: nothing is written past a full disk.
    if (check) void check.then(() => this.pass(chunk, callback));
    else this.pass(chunk, callback);
  }
  private pass(chunk: Buffer, callback: TransformCallback): void {
    if (this.budget.problem) {
      callback(this.budget.problem);
      return;
    }
    this.onBytes(this.budget.written);
    callback(null, chunk);
  }
}

export function tooLargeError(handle: string, limit: number): HubcacheError {
  return new HubcacheError(
    ErrorCode.TOO_LARGE,
    `${handle} unpacks to more than ${limit} bytes, the limit (maxExtractBytes); extraction was stopped.`,
    {
      handle,
      hint: "Raise the limit (--max-extract-bytes, HUBCACHE_MAX_EXTRACT_BYTES or the maxExtractBytes option) if you trust this model; an archive that unpacks to far more than it weighs may be a decompression bomb.",
    },
  );
}

export function diskGuardError(limits: GuardLimits, free: number): HubcacheError {
  return new HubcacheError(
    ErrorCode.DISK_FULL,
    `Not enough disk space for ${limits.handle} in ${limits.dir}: ${free} bytes free and ${limits.reserve} must stay free; extraction was stopped before the disk was full.`,
    {
      handle: limits.handle,
      hint: "Free some space, or point TFHUB_CACHE_DIR at a larger disk. HUBCACHE_MIN_FREE_BYTES (the minFreeBytes option) sets how much hubcache leaves free.",
    },
  );
}
