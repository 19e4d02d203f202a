/**
 * Bounds in time for one download, besides the idle timeout (no bytes at all for a while):
 * - a minimum average rate, like curl's --speed-limit/--speed-time: a host that trickles a byte a
 *   second never trips the idle timeout, yet would hold the cache lock for days;
 * - an optional overall deadline, from the first request to the last byte, retries included.
 *
 * The rate counts only the time spent waiting for the network: while the consumer (tar, the disk)
 * is busy, nothing is read and that time is not the host's fault.
 */
import { type Env, envNumber, optionNumber } from "../config.js";
import { DEFAULTS } from "../settings-table.js";

export interface TransferLimits {
  /** Slower than this (bytes/s, averaged over `speedWindowMs` of waiting) is a stall. 0: no limit. */
  minSpeedBytesPerSec: number;
  /** The window the rate is averaged over, ms. */
  speedWindowMs: number;
  /** The whole download (all attempts) must end within this many ms. undefined: no deadline. */
  deadlineMs: number | undefined;
}

/**
 * 1 KiB/s over 30 s: slower than any link a model is worth downloading over (a 100 MB model
 * would take more than a day), and well above a trickle of a few bytes a second that only keeps
 * a connection alive. 30 s is the idle timeout's default, so "almost stalled" is caught as soon as
 * "stalled" is. Both are settings: HUBCACHE_MIN_SPEED (0 turns it off), HUBCACHE_MIN_SPEED_TIME.
 */
export const DEFAULT_TRANSFER_LIMITS: TransferLimits = {
  minSpeedBytesPerSec: DEFAULTS.minSpeedBytesPerSec,
  speedWindowMs: DEFAULTS.minSpeedWindowMs,
  deadlineMs: undefined,
};

/** The error code that marks a transfer below the minimum rate (retried like a stall). */
export const TOO_SLOW = "HUBCACHE_TOO_SLOW";
/** The error code that marks a download past its deadline (never retried). */
export const PAST_DEADLINE = "HUBCACHE_DEADLINE";

export interface TooSlowError extends Error {
  code: typeof TOO_SLOW;
  bytesPerSec: number;
  windowMs: number;
  limit: number;
}

interface Sample {
  waitedMs: number;
  bytes: number;
}

/** The average rate of one response body over a sliding window of network waiting time. */
export class SpeedMeter {
  private waitedMs = 0;
  private bytes = 0;
  private readonly samples: Sample[] = [{ waitedMs: 0, bytes: 0 }];

  constructor(private readonly limits: TransferLimits) {}

  /** Count one read: `bytes` arrived after waiting `waitedMs`. Throws a TooSlowError below the limit. */
  record(bytes: number, waitedMs: number): void {
    const { minSpeedBytesPerSec: limit, speedWindowMs: windowMs } = this.limits;
    if (limit <= 0) return;
    this.waitedMs += waitedMs;
    this.bytes += bytes;
    // Keep the newest sample that is at least a window old, and drop the ones before it.
    while (this.samples.length > 1 && this.waitedMs - (this.samples[1]?.waitedMs ?? 0) >= windowMs) {
      this.samples.shift();
    }
    const oldest = this.samples[0] ?? { waitedMs: 0, bytes: 0 };
    const last = this.samples[this.samples.length - 1] ?? oldest;
    // One sample per tenth of a window keeps the list short whatever the chunk sizes.
    if (this.waitedMs - last.waitedMs >= windowMs / 10) {
      this.samples.push({ waitedMs: this.waitedMs, bytes: this.bytes });
    }
    const spanMs = this.waitedMs - oldest.waitedMs;
    if (spanMs < windowMs) return;
    const bytesPerSec = ((this.bytes - oldest.bytes) * 1000) / spanMs;
    if (bytesPerSec >= limit) return;
    throw Object.assign(new Error(`${Math.round(bytesPerSec)} B/s, below ${limit} B/s`), {
      code: TOO_SLOW,
      bytesPerSec,
      windowMs: spanMs,
      limit,
    }) as TooSlowError;
  }
}

export function isTooSlow(error: unknown): error is TooSlowError {
  return error instanceof Error && (error as { code?: unknown }).code === TOO_SLOW;
}

/** When a download that started at `startedAt` must be over (epoch ms), or undefined. */
export function deadlineOf(limits: TransferLimits, startedAt: number): number | undefined {
  return limits.deadlineMs === undefined ? undefined : startedAt + limits.deadlineMs;
}

/** A human rate: "37 B/s", "12.5 KiB/s". */
export function formatRate(bytesPerSec: number): string {
  if (bytesPerSec < 1024) return `${Math.round(bytesPerSec)} B/s`;
  if (bytesPerSec < 1024 * 1024) return `${(bytesPerSec / 1024).toFixed(1)} KiB/s`;
  return `${(bytesPerSec / 1024 / 1024).toFixed(1)} MiB/s`;
}

/** The options of resolve()/load() that set these limits (the environment's names in brackets). */
export interface TransferOptions {
  /** Minimum average rate in bytes/s; slower is retried, then ERR_HUBCACHE_TIMEOUT. 0 turns it off. Default: HUBCACHE_MIN_SPEED (defaults: docs/settings.md). */
  minSpeedBytesPerSec?: number | undefined;
  /** The window that rate is averaged over, ms. Default: HUBCACHE_MIN_SPEED_TIME (defaults: docs/settings.md). */
  minSpeedWindowMs?: number | undefined;
  /** The whole download, retries included, must end within this many ms. Default: HUBCACHE_DEADLINE (defaults: docs/settings.md). */
  deadlineMs?: number | undefined;
}

/** Options win over the environment, which wins over the defaults. */
export function readTransferLimits(env: Env, options: TransferOptions = {}): TransferLimits {
  const seconds = (name: string): number | undefined => {
    const value = envNumber(env, name);
    return value === undefined ? undefined : value * 1000;
  };
  const window =
    optionNumber("minSpeedWindowMs", options.minSpeedWindowMs) ??
    seconds("HUBCACHE_MIN_SPEED_TIME") ??
    DEFAULT_TRANSFER_LIMITS.speedWindowMs;
  return {
    minSpeedBytesPerSec:
      optionNumber("minSpeedBytesPerSec", options.minSpeedBytesPerSec) ??
      envNumber(env, "HUBCACHE_MIN_SPEED") ??
      DEFAULT_TRANSFER_LIMITS.minSpeedBytesPerSec,
    speedWindowMs: Math.max(1, window),
    deadlineMs: optionNumber("deadlineMs", options.deadlineMs) ?? seconds("HUBCACHE_DEADLINE"),
  };
}
