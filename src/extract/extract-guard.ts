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

/** Counts the tar bytes going to node-tar and stops before a limit or a nearly full disk is crossed. */
export class ExtractGuard extends Transform {
  bytes = 0;
  private sinceCheck = 0;
  private readonly interval: number;
  constructor(
    private readonly limits: GuardLimits,
    private readonly onBytes: (total: number) => void,
  ) {
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
    this.onBytes(next);
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
