/** When and how long to wait before trying a request again. Pure functions plus one budget object. */
import { setTimeout as sleep } from "node:timers/promises";
import { DEFAULTS } from "../settings-table.js";

export interface RetryPolicy {
  /** Retries after the first attempt (0: never retry). */
  retries: number;
  /** Backoff of the first retry in ms; doubles each time, with jitter. */
  baseDelayMs: number;
  /** Longest backoff between two attempts. */
  maxDelayMs: number;
  /** A Retry-After longer than this is not waited for: the error is reported instead. */
  maxRetryAfterMs: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  retries: DEFAULTS.retries,
  baseDelayMs: DEFAULTS.retryDelayMs,
  maxDelayMs: 30_000,
  maxRetryAfterMs: 120_000,
};

/** 408 Request Timeout, 429 Too Many Requests and every 5xx are worth another try; nothing else. */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || (status >= 500 && status <= 599);
}

/** Network error codes that a later attempt may not meet (resets, refusals, stalls, DNS hiccups). */
const RETRYABLE_CODES = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EAI_AGAIN",
  "ENETUNREACH",
  "EHOSTUNREACH",
  "ENETDOWN",
  "UND_ERR_SOCKET",
  "UND_ERR_CLOSED",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
  "HUBCACHE_IDLE_TIMEOUT",
  "HUBCACHE_TOO_SLOW",
  "HUBCACHE_SHORT_BODY",
  // undici's word for a body shorter than its Content-Length (node:http's path says ECONNRESET).
  "UND_ERR_RES_CONTENT_LENGTH_MISMATCH",
]);

/** The most specific code in an error and its `cause` chain (undici wraps socket errors). */
export function networkErrorCode(error: unknown): string | undefined {
  let current: unknown = error;
  let found: string | undefined;
  for (let depth = 0; depth < 5 && current !== null && typeof current === "object"; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === "string") found = code;
    current = (current as { cause?: unknown }).cause;
  }
  if (found === undefined && error instanceof Error && error.message === "terminated") {
    return "UND_ERR_SOCKET";
  }
  return found;
}

/**
 * A proxy that answers the tunnel with 502/503/504 could not reach the host: the same failure as
 * a refused or timed-out direct connection, so it is retried the same way.
 */
function proxyTunnelStatus(error: unknown): number | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current instanceof Error; depth++) {
    const match = /^Proxy response \((\d{3})\)/.exec(current.message);
    if (match) return Number(match[1]);
    current = current.cause;
  }
  return undefined;
}

export function isRetryableNetworkError(error: unknown): boolean {
  const code = networkErrorCode(error);
  if (code !== undefined && RETRYABLE_CODES.has(code)) return true;
  const tunnel = proxyTunnelStatus(error);
  return tunnel !== undefined && tunnel >= 502 && tunnel <= 504;
}

/**
 * Retry-After as milliseconds: delta-seconds or an HTTP-date (RFC 9110 §10.2.3).
 * Undefined when absent or unreadable; never negative.
 */
export function parseRetryAfter(value: string | null | undefined, now = Date.now()): number | undefined {
  if (value === null || value === undefined) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}

/** Exponential backoff with "equal jitter": half fixed, half random, so clients spread out. */
export function backoffDelay(
  attempt: number,
  policy: RetryPolicy,
  random: () => number = Math.random,
): number {
  const exponential = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(exponential / 2 + random() * (exponential / 2));
}

/** One download's retries, shared by every request it makes (first try, resumes, restarts). */
export class RetryBudget {
  /** Retries used so far. */
  used = 0;
  /** When the download began (epoch ms): its deadline and "gave up after ... s" count from here. */
  readonly startedAt = Date.now();
  constructor(readonly policy: RetryPolicy) {}

  get left(): number {
    return this.policy.retries - this.used;
  }

  /**
   * Take one retry: returns the delay to wait, or undefined when the budget is spent or the
   * host asks for a longer wait than we are willing to give.
   */
  next(retryAfterMs: number | undefined): number | undefined {
    if (this.used >= this.policy.retries) return undefined;
    if (retryAfterMs !== undefined && retryAfterMs > this.policy.maxRetryAfterMs) return undefined;
    this.used++;
    return retryAfterMs ?? backoffDelay(this.used, this.policy);
  }

  /** Give back the retry `next` took, when it is not made after all (a deadline comes first). */
  refund(): void {
    this.used = Math.max(0, this.used - 1);
  }
}

/** Wait, unless the caller aborts. */
export async function wait(ms: number, signal: AbortSignal | undefined): Promise<void> {
  if (ms <= 0) {
    signal?.throwIfAborted();
    return;
  }
  await sleep(ms, undefined, signal ? { signal } : undefined);
}
