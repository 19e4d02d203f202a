/**
 * One logical request (first try and retries) over a Transport, with everything both HTTP stacks
 * must agree on decided here, once:
 * - redirects: followed up to MAX_REDIRECTS hops, only to http(s), credentials dropped across
 *   origins; a loop, a bad Location or another scheme is ERR_HUBCACHE_HTTP with the 3xx status;
 * - on a guarded transport (the mirror's, see address-guard.ts), every hop's URL is checked before
 *   it is sent, and the transport checks the addresses it connects to; a refusal is
 *   ERR_HUBCACHE_FORBIDDEN, never retried;
 * - content codings: the ones in DECODED_CODINGS are decoded by the transport, any other is
 *   ERR_HUBCACHE_UNEXPECTED_RESPONSE before a byte is read;
 * - retries: connection errors, stalls, 408, 429 and 5xx are retried with backoff, honouring
 *   Retry-After, within one RetryBudget and the download's deadline; each retry is a `retry` event;
 * - the idle timeout until the headers arrive.
 */
import { ErrorCode, HubcacheError, abortedError } from "../errors.js";
import type { EventListener } from "../events.js";
import { redactUrl } from "../redact.js";
import { USER_AGENT } from "../version.js";
import { type AddressGuard, AddressRefused } from "./address-guard.js";
import { httpStatusError, networkError } from "./http-errors.js";
import {
  type RetryBudget,
  isRetryableNetworkError,
  isRetryableStatus,
  networkErrorCode,
  parseRetryAfter,
  wait,
} from "./retry.js";
import { PAST_DEADLINE, deadlineOf } from "./transfer-limits.js";
import {
  DECODED_CODINGS,
  type OutgoingRequest,
  type Reply,
  type Transport,
  contentCodings,
} from "./transport.js";

/** Hooks for a download made on someone's behalf, e.g. under a cache lock (see cache/local-cache.ts). */
export interface AttemptHooks {
  /** Runs before each request (first try, retries, resumes); throws to stop the download. */
  beforeAttempt(): Promise<void>;
  /** Runs about every WAITING_BEAT_MS while the download waits between attempts (backoff, Retry-After). */
  whileWaiting(): void;
}

/** How often `whileWaiting` runs during a wait between attempts. */
export const WAITING_BEAT_MS = 250;

/** As fetch (and browsers): more hops than this is a loop. */
export const MAX_REDIRECTS = 20;
const REDIRECTS = new Set([301, 302, 303, 307, 308]);

export interface RequestOptions {
  handle: string;
  transport: Transport;
  idleTimeoutMs: number;
  budget: RetryBudget;
  emit: EventListener;
  signal?: AbortSignal | undefined;
  hooks?: AttemptHooks | undefined;
}

export interface ActiveRequest {
  response: Reply;
  controller: AbortController;
  dispose(): void;
}

/** What one call of `withRetries` asks for. */
export interface RequestShape {
  method?: "GET" | "HEAD";
  headers?: Record<string, string>;
  /** Non-2xx statuses handed back to the caller instead of thrown (e.g. 404 for a stat). */
  accept?: (status: number) => boolean;
}

/** An error code that marks a stall, so it is retried like a reset. */
export function idleTimeout(ms: number): Error {
  return Object.assign(new Error(`no data for ${ms} ms`), { code: "HUBCACHE_IDLE_TIMEOUT" });
}

/**
 * fetch refuses URLs with user:password@; send them as Basic auth instead (dropped on a redirect
 * to another origin, so signed storage URLs never see it).
 */
function splitCredentials(url: string): { url: string; headers: Record<string, string> } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return { url, headers: {} };
  }
  if (!parsed.username && !parsed.password) return { url, headers: {} };
  const user = decodeURIComponent(parsed.username);
  const password = decodeURIComponent(parsed.password);
  parsed.username = "";
  parsed.password = "";
  return {
    url: parsed.toString(),
    headers: { authorization: `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}` },
  };
}

function redirectError(handle: string, reply: Reply, problem: string): HubcacheError {
  return new HubcacheError(
    ErrorCode.HTTP,
    `${handle} could not be fetched: HTTP ${reply.status} from ${redactUrl(reply.url)} ${problem}.`,
    { handle, status: reply.status, hint: "The host's redirects lead nowhere; report it to the host." },
  );
}

/** The next URL of a redirect, or undefined when `reply` is not one hubcache follows. */
function redirectTarget(handle: string, reply: Reply, hop: number): URL | undefined {
  const location = REDIRECTS.has(reply.status) ? reply.header("location") : undefined;
  if (location === undefined) return undefined;
  if (hop >= MAX_REDIRECTS) {
    throw redirectError(handle, reply, `after ${MAX_REDIRECTS} redirects (a redirect loop?)`);
  }
  let next: URL;
  try {
    next = new URL(location, reply.url);
  } catch {
    throw redirectError(handle, reply, `with an invalid Location "${location.slice(0, 200)}"`);
  }
  if (next.protocol !== "http:" && next.protocol !== "https:") {
    throw redirectError(handle, reply, `redirects to ${next.protocol}, which is not http(s)`);
  }
  return next;
}

/** A request the address guard refused, coded so that it is never retried. */
function refusedError(handle: string, url: string, reason: string, guard: AddressGuard): HubcacheError {
  return new HubcacheError(
    ErrorCode.FORBIDDEN,
    `${handle} could not be fetched: the request for ${redactUrl(url)} was refused: ${reason}.`,
    { handle, hint: guard.hint },
  );
}

/** Send one hop, unless the guard refuses its URL or (in the transport) its addresses. */
async function sendGuarded(transport: Transport, handle: string, request: OutgoingRequest): Promise<Reply> {
  const { guard } = transport;
  if (guard === undefined) return transport.send(request);
  const verdict = guard.allowTarget(new URL(request.url));
  if (!verdict.allowed) throw refusedError(handle, request.url, verdict.reason, guard);
  try {
    return await transport.send({ ...request, guard });
  } catch (error) {
    // undici's fetch reports it as the cause of a TypeError("fetch failed").
    const refused = error instanceof AddressRefused ? error : (error as { cause?: unknown } | null)?.cause;
    if (refused instanceof AddressRefused) throw refusedError(handle, request.url, refused.message, guard);
    throw error;
  }
}

export class Requester {
  readonly url: string;
  private readonly authHeaders: Record<string, string>;
  private readonly deadline: number | undefined;

  constructor(
    url: string,
    private readonly options: RequestOptions,
  ) {
    const split = splitCredentials(url);
    this.url = split.url;
    this.authHeaders = split.headers;
    this.deadline = deadlineOf(options.transport.limits, options.budget.startedAt);
  }

  get handle(): string {
    return this.options.handle;
  }

  get budget(): RetryBudget {
    return this.options.budget;
  }

  get idleTimeoutMs(): number {
    return this.options.idleTimeoutMs;
  }

  get limits(): Transport["limits"] {
    return this.options.transport.limits;
  }

  aborted(): boolean {
    return this.options.signal?.aborted === true;
  }

  abortedError(cause?: unknown): HubcacheError {
    return abortedError(this.handle, `Downloading ${this.handle}`, cause);
  }

  /** Milliseconds until the deadline (Infinity without one). */
  timeLeft(): number {
    return this.deadline === undefined ? Infinity : this.deadline - Date.now();
  }

  /** The error for a download past its deadline, `progress` saying how far it got. */
  pastDeadline(progress: string): HubcacheError {
    const seconds = Math.round((this.limits.deadlineMs ?? 0) / 1000);
    return new HubcacheError(
      ErrorCode.TIMEOUT,
      `The download of ${this.handle} did not finish within its deadline of ${seconds} s (${progress}).`,
      {
        handle: this.handle,
        hint: "Raise the deadline with HUBCACHE_DEADLINE (seconds) or the deadlineMs option, or unset it for none.",
        cause: Object.assign(new Error("deadline"), { code: PAST_DEADLINE }),
      },
    );
  }

  /** A timer for the next wait: the idle timeout, or the deadline when it comes first. */
  armTimer(onFire: (kind: "idle" | "deadline") => void): NodeJS.Timeout {
    const left = this.timeLeft();
    const idle = this.idleTimeoutMs;
    return left < idle
      ? setTimeout(() => onFire("deadline"), Math.max(0, left))
      : setTimeout(() => onFire("idle"), idle);
  }

  /** One request and its redirects, with the idle timer running until the final headers arrive. */
  async once(shape: RequestShape): Promise<ActiveRequest> {
    const controller = new AbortController();
    const onAbort = (): void => controller.abort();
    const { signal } = this.options;
    if (signal?.aborted) throw this.abortedError();
    if (this.timeLeft() <= 0) throw this.pastDeadline("before a request");
    signal?.addEventListener("abort", onAbort, { once: true });
    const dispose = (): void => signal?.removeEventListener("abort", onAbort);
    let fired: "idle" | "deadline" | undefined;
    const timer = this.armTimer((kind) => {
      fired = kind;
      controller.abort();
    });
    try {
      const response = await this.follow(shape, controller.signal);
      return { response, controller, dispose };
    } catch (error) {
      dispose();
      if (this.aborted()) throw this.abortedError(error);
      if (fired === "deadline") throw this.pastDeadline("waiting for an answer");
      if (fired === "idle") throw idleTimeout(this.options.idleTimeoutMs);
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  private async follow(shape: RequestShape, signal: AbortSignal): Promise<Reply> {
    let url = this.url;
    let headers: Record<string, string> = {
      "user-agent": USER_AGENT,
      "accept-encoding": "identity",
      ...this.authHeaders,
      ...shape.headers,
    };
    for (let hop = 0; ; hop++) {
      const reply = await sendGuarded(this.options.transport, this.handle, {
        method: shape.method ?? "GET",
        url,
        headers,
        signal,
      });
      const next = redirectTarget(this.handle, reply, hop);
      if (next === undefined) return reply;
      reply.cancel();
      // Credentials never follow a redirect to another origin (signed storage URLs carry their own).
      if (next.origin !== new URL(url).origin) {
        const { authorization: _auth, cookie: _cookie, ...rest } = headers;
        headers = rest;
      }
      // A Location with user:password@ is sent as Basic auth, as the first URL's are, on every stack
      // (node:http would send them itself, hubcache's socket reader would not, fetch refuses the URL).
      const split = splitCredentials(next.toString());
      url = split.url;
      headers = { ...headers, ...split.headers };
    }
  }

  /** Wait before the next attempt, reporting it; throws `failure` (saying so) when it may not. */
  async backoff(reason: string, failure: HubcacheError, retryAfterMs?: number): Promise<void> {
    const { budget, emit } = this.options;
    const maxWaitMs = budget.policy.maxRetryAfterMs;
    if (retryAfterMs !== undefined && retryAfterMs > maxWaitMs && budget.left > 0) {
      throw gaveUp(failure, budget, {
        reason: `the host asked to wait ${Math.round(retryAfterMs / 1000)} s (Retry-After), more than the ${Math.round(maxWaitMs / 1000)} s hubcache waits`,
        hint: "The host is rate-limiting or down for maintenance: try again after the time it asked for.",
      });
    }
    const delay = budget.next(retryAfterMs);
    if (delay === undefined) throw gaveUp(failure, budget);
    if (delay >= this.timeLeft()) {
      budget.refund();
      const seconds = Math.round((this.limits.deadlineMs ?? 0) / 1000);
      throw gaveUp(failure, budget, {
        reason: `the deadline of ${seconds} s comes first`,
        hint: "HUBCACHE_DEADLINE (seconds) or the deadlineMs option sets the deadline.",
      });
    }
    emit({
      type: "retry",
      handle: this.handle,
      attempt: budget.used,
      delayMs: delay,
      reason,
      retries: budget.policy.retries,
      url: redactUrl(this.url),
      code: failure.code,
      elapsedMs: Date.now() - budget.startedAt,
    });
    // Waiting on purpose (alive, honouring the host) is not a stall: let the hooks say so. Only
    // while waiting: a process frozen mid-download runs no timers and still looks stalled.
    const { hooks } = this.options;
    hooks?.whileWaiting();
    const beat = hooks ? setInterval(() => hooks.whileWaiting(), WAITING_BEAT_MS) : undefined;
    try {
      await wait(delay, this.options.signal);
    } catch (error) {
      throw this.abortedError(error);
    } finally {
      clearInterval(beat);
    }
  }

  /**
   * Request until an acceptable answer (2xx, or one `shape.accept` takes) arrives or the budget
   * is spent. Non-retryable statuses and errors throw at once.
   */
  async withRetries(shape: RequestShape = {}): Promise<ActiveRequest> {
    for (;;) {
      // Before every request, so also right after each backoff: may this download go on?
      await this.options.hooks?.beforeAttempt();
      let failure: HubcacheError;
      let reason: string;
      let retryAfterMs: number | undefined;
      try {
        const active = await this.once(shape);
        const { response } = active;
        const ok = response.status >= 200 && response.status < 300;
        if (ok) checkCodings(this.handle, active);
        if (ok || shape.accept?.(response.status)) return active;
        response.cancel();
        active.dispose();
        failure = httpStatusError(response.status, this.handle, response.url || this.url);
        if (!isRetryableStatus(response.status)) throw failure;
        retryAfterMs = parseRetryAfter(response.header("retry-after"));
        reason = `HTTP ${response.status}${retryAfterMs === undefined ? "" : ` (Retry-After: ${Math.round(retryAfterMs / 1000)} s)`}`;
      } catch (error) {
        if (error instanceof HubcacheError) throw error;
        failure = networkError(error, this.handle, this.url);
        if (!isRetryableNetworkError(error)) throw failure;
        reason = networkErrorCode(error) ?? "network error";
      }
      await this.backoff(reason, failure, retryAfterMs);
    }
  }
}

/** A body in a coding neither stack decodes is refused, whatever the stack. */
function checkCodings(handle: string, active: ActiveRequest): void {
  const { response } = active;
  const unknown = contentCodings(response.header("content-encoding")).filter((c) => !DECODED_CODINGS.has(c));
  if (unknown.length === 0) return;
  response.cancel();
  active.dispose();
  throw new HubcacheError(
    ErrorCode.UNEXPECTED_RESPONSE,
    `${handle} came with Content-Encoding "${unknown.join(", ")}", which hubcache cannot decode (from ${redactUrl(response.url)}).`,
    {
      handle,
      status: response.status,
      hint: "hubcache asks for the plain bytes (Accept-Encoding: identity) and decodes gzip, deflate and br; ask the host to serve the file unencoded.",
    },
  );
}

/** Why retrying stopped before the budget did, and what sets that limit. */
export interface StopReason {
  reason: string;
  hint: string;
}

/** The final error after retries: how many attempts over how long, and what sets them. */
export function gaveUp(error: HubcacheError, budget: RetryBudget, stop?: StopReason): HubcacheError {
  if (budget.used === 0 && stop === undefined) return error;
  const seconds = ((Date.now() - budget.startedAt) / 1000).toFixed(1);
  const attempts = `${budget.used + 1} attempt${budget.used === 0 ? "" : "s"} over ${seconds} s`;
  const reason = stop === undefined ? "" : `; ${stop.reason}`;
  const setting =
    stop?.hint ?? `HUBCACHE_RETRIES (now ${budget.policy.retries}) sets how many times hubcache retries.`;
  return new HubcacheError(
    error.code,
    `${error.message} Gave up after ${budget.used} retries (${attempts}${reason}).`,
    {
      handle: error.handle,
      status: error.status,
      hint: `${error.hint ?? ""} ${setting}`.trim(),
      cause: error.cause,
    },
  );
}
