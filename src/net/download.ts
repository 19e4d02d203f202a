/**
 * One archive download as one continuous byte stream, whatever the network does:
 * - failed requests (connection errors, 408, 429, 5xx) are retried with backoff and jitter,
 *   honouring Retry-After; 4xx answers fail at once;
 * - no bytes for `idleTimeoutMs` (headers or body) counts as a failed request;
 * - when the body breaks after bytes arrived, the rest is asked for with Range + If-Range and,
 *   if the host answers 206 with the right Content-Range, appended to the same stream; otherwise
 *   the stream fails with RestartRequired and the caller starts over from an empty directory;
 * - a body shorter than its Content-Length is a broken body, not an end.
 * Every retry is reported as a `retry` event. Nothing here ever shows a URL unredacted.
 * Optional hooks run before each request (a lock holder checks it still holds the lock) and while
 * waiting between attempts (it keeps the lock fresh).
 */
import type { IncomingMessage } from "node:http";
import { Readable } from "node:stream";
import { ErrorCode, HubcacheError, RestartRequired } from "../errors.js";
import type { EventListener } from "../events.js";
import { USER_AGENT } from "../version.js";
import { type FetchFunction, httpStatusError, networkError } from "./http-errors.js";
import { nodeGet } from "./node-transport.js";
import {
  type RetryBudget,
  isRetryableNetworkError,
  isRetryableStatus,
  networkErrorCode,
  parseRetryAfter,
  wait,
} from "./retry.js";

/** One answer, whichever HTTP stack brought it. */
export interface Reply {
  status: number;
  /** The URL that answered, after redirects. */
  url: string;
  header(name: string): string | undefined;
  /** The next body bytes, or null at the end. Rejects when the body breaks or the request is aborted. */
  next(): Promise<Buffer | null>;
  /** Stop reading and release the connection. */
  cancel(): void;
}

/** GET `url` (following redirects); aborting `signal` must make the request and `next()` reject. */
export type Transport = (url: string, headers: Record<string, string>, signal: AbortSignal) => Promise<Reply>;

/** A transport over any fetch (hubcache's undici client for proxies, or the caller's). */
export function fetchTransport(fetch: FetchFunction): Transport {
  return async (url, headers, signal) => {
    const response = await fetch(url, { headers, redirect: "follow", signal });
    const reader = response.body?.getReader();
    return {
      status: response.status,
      url: response.url || url,
      header: (name) => response.headers.get(name) ?? undefined,
      next: async () => {
        if (!reader) return null;
        const { done, value } = await reader.read();
        return done ? null : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
      },
      cancel: () => void reader?.cancel().catch(() => undefined),
    };
  };
}

/**
 * The fast path: node:http(s), about half the main-thread CPU of fetch's web streams for a large
 * body (see src/net/node-transport.ts). Used when no proxy and no custom fetch are involved.
 */
export function nodeTransport(options: { insecureTls: boolean; connectTimeoutMs: number }): Transport {
  return async (url, headers, signal) => {
    const response = await nodeGet(url, {
      headers,
      signal,
      connectTimeoutMs: options.connectTimeoutMs,
      ...(options.insecureTls ? { rejectUnauthorized: false } : {}),
    });
    const iterator = response.body[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    return {
      status: response.status,
      url: response.url,
      header: (name) => {
        const value = response.headers[name.toLowerCase()];
        return Array.isArray(value) ? value.join(", ") : value;
      },
      next: async () => {
        const { done, value } = await iterator.next();
        if (done) {
          // node:http ends a body cut short by a closed connection without an error: say so.
          if (!(response.body as IncomingMessage).complete) {
            throw Object.assign(new Error("the connection closed mid-body"), { code: "ECONNRESET" });
          }
          return null;
        }
        return value;
      },
      cancel: () => response.body.destroy(),
    };
  };
}

/** Hooks for a download made on someone's behalf, e.g. under a cache lock (see cache/local-cache.ts). */
export interface AttemptHooks {
  /** Runs before each request (first try, retries, resumes); throws to stop the download. */
  beforeAttempt(): Promise<void>;
  /** Runs about every WAITING_BEAT_MS while the download waits between attempts (backoff, Retry-After). */
  whileWaiting(): void;
}

/** How often `whileWaiting` runs during a wait between attempts. */
export const WAITING_BEAT_MS = 250;

export interface DownloadOptions {
  handle: string;
  transport: Transport;
  idleTimeoutMs: number;
  budget: RetryBudget;
  emit: EventListener;
  signal?: AbortSignal | undefined;
  hooks?: AttemptHooks | undefined;
}

export interface Download {
  /** The body, continuous across resumed requests. */
  stream: Readable;
  /** Total size, when the host said (Content-Length of an unencoded body). */
  contentLength: number | undefined;
  contentType: string | undefined;
  /** Where the bytes came from after redirects (redact before showing). */
  finalUrl: string;
}

/** An error code that marks a stall, so it is retried like a reset. */
function idleTimeout(ms: number): Error {
  return Object.assign(new Error(`no data for ${ms} ms`), { code: "HUBCACHE_IDLE_TIMEOUT" });
}

interface ActiveRequest {
  response: Reply;
  controller: AbortController;
  dispose(): void;
}

/**
 * fetch refuses URLs with user:password@; send them as Basic auth instead (fetch drops the header
 * on a redirect to another origin, so signed storage URLs never see it).
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

class Requester {
  private readonly url: string;
  private readonly authHeaders: Record<string, string>;

  constructor(
    url: string,
    private readonly options: DownloadOptions,
  ) {
    const split = splitCredentials(url);
    this.url = split.url;
    this.authHeaders = split.headers;
  }

  get handle(): string {
    return this.options.handle;
  }

  get budget(): RetryBudget {
    return this.options.budget;
  }

  aborted(): boolean {
    return this.options.signal?.aborted === true;
  }

  abortedError(cause?: unknown): HubcacheError {
    return new HubcacheError(ErrorCode.ABORTED, `Downloading ${this.handle} was aborted.`, {
      handle: this.handle,
      hint: "The caller's AbortSignal fired; nothing was cached.",
      cause,
    });
  }

  /** One GET, with the idle timer running until the headers arrive. */
  async once(headers: Record<string, string>): Promise<ActiveRequest> {
    const controller = new AbortController();
    const onAbort = (): void => controller.abort();
    const { signal } = this.options;
    if (signal?.aborted) throw this.abortedError();
    signal?.addEventListener("abort", onAbort, { once: true });
    const dispose = (): void => signal?.removeEventListener("abort", onAbort);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, this.options.idleTimeoutMs);
    try {
      const response = await this.options.transport(
        this.url,
        { "user-agent": USER_AGENT, "accept-encoding": "identity", ...this.authHeaders, ...headers },
        controller.signal,
      );
      return { response, controller, dispose };
    } catch (error) {
      dispose();
      if (this.aborted()) throw this.abortedError(error);
      if (timedOut) throw idleTimeout(this.options.idleTimeoutMs);
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Wait before the next attempt, reporting it; false when the budget is spent. */
  async backoff(reason: string, retryAfterMs?: number): Promise<boolean> {
    const delay = this.options.budget.next(retryAfterMs);
    if (delay === undefined) return false;
    this.options.emit({
      type: "retry",
      handle: this.handle,
      attempt: this.options.budget.used,
      delayMs: delay,
      reason,
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
    return true;
  }

  /**
   * GET until an acceptable answer (2xx) arrives or the budget is spent. Non-retryable statuses
   * and errors throw at once.
   */
  async withRetries(headers: Record<string, string>): Promise<ActiveRequest> {
    for (;;) {
      // Before every request, so also right after each backoff: may this download go on?
      await this.options.hooks?.beforeAttempt();
      let failure: HubcacheError;
      let reason: string;
      let retryAfterMs: number | undefined;
      try {
        const active = await this.once(headers);
        const { response } = active;
        if (response.status >= 200 && response.status < 300) return active;
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
      if (!(await this.backoff(reason, retryAfterMs))) throw gaveUp(failure, this.options.budget);
    }
  }
}

function gaveUp(error: HubcacheError, budget: RetryBudget): HubcacheError {
  if (budget.used === 0) return error;
  return new HubcacheError(error.code, `${error.message} Gave up after ${budget.used} retries.`, {
    handle: error.handle,
    status: error.status,
    hint: error.hint,
    cause: error.cause,
  });
}

/** A strong validator for If-Range: a strong ETag, else Last-Modified. */
function validatorOf(response: Reply): string | undefined {
  const etag = response.header("etag");
  if (etag && !etag.startsWith("W/")) return etag;
  return response.header("last-modified");
}

function parseContentRange(
  value: string | undefined,
): { start: number; total: number | undefined } | undefined {
  const match = /^bytes\s+(\d+)-(\d+)\/(\d+|\*)$/i.exec(value?.trim() ?? "");
  if (!match) return undefined;
  return { start: Number(match[1]), total: match[3] === "*" ? undefined : Number(match[3]) };
}

function lengthOf(response: Reply): number | undefined {
  const encoding = response.header("content-encoding");
  if (encoding && encoding.toLowerCase() !== "identity") return undefined; // decoded by fetch
  const length = response.header("content-length");
  return length !== undefined && /^\d+$/.test(length.trim()) ? Number(length) : undefined;
}

/** GET the archive (retrying as needed) and return its body as one resumable stream. */
export async function openDownload(url: string, options: DownloadOptions): Promise<Download> {
  const requester = new Requester(url, options);
  const first = await requester.withRetries({});
  const { response } = first;
  const info = bodyInfo(response, options.idleTimeoutMs);
  return {
    stream: new ResumableBody(requester, first, info),
    contentLength: info.total,
    contentType: response.header("content-type"),
    finalUrl: response.url || url,
  };
}

interface BodyInfo {
  total: number | undefined;
  validator: string | undefined;
  etag: string | undefined;
  idleTimeoutMs: number;
}

function bodyInfo(response: Reply, idleTimeoutMs: number): BodyInfo {
  const total = lengthOf(response);
  const acceptsRanges = (response.header("accept-ranges") ?? "").toLowerCase() !== "none";
  return {
    total,
    validator: total !== undefined && acceptsRanges ? validatorOf(response) : undefined,
    etag: response.header("etag"),
    idleTimeoutMs,
  };
}

class ResumableBody extends Readable {
  private received = 0;
  private pumping = false;
  private finished = false;

  constructor(
    private readonly requester: Requester,
    private active: ActiveRequest,
    private info: BodyInfo,
  ) {
    super({ highWaterMark: 1 << 20 });
  }

  override _read(): void {
    if (this.pumping || this.finished) return;
    this.pumping = true;
    void this.pump();
  }

  private async pump(): Promise<void> {
    try {
      for (;;) {
        const chunk = await this.nextChunk();
        if (this.destroyed) return;
        if (chunk === null) {
          this.finished = true;
          this.active.dispose();
          this.push(null);
          return;
        }
        this.received += chunk.length;
        if (!this.push(chunk)) break;
      }
      this.pumping = false;
    } catch (error) {
      this.pumping = false;
      this.destroy(error as Error);
    }
  }

  /** The next bytes, recovering from a broken body by resuming or asking for a restart. */
  private async nextChunk(): Promise<Buffer | null> {
    for (;;) {
      try {
        const chunk = await this.readWithTimeout();
        if (chunk !== null) return chunk;
        if (this.info.total !== undefined && this.received < this.info.total) {
          throw Object.assign(new Error("the body ended before its Content-Length"), {
            code: "HUBCACHE_SHORT_BODY",
          });
        }
        return null;
      } catch (error) {
        if (error instanceof HubcacheError || error instanceof RestartRequired) throw error;
        if (this.requester.aborted()) throw this.requester.abortedError(error);
        await this.recover(error);
      }
    }
  }

  private async readWithTimeout(): Promise<Buffer | null> {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      this.active.controller.abort();
    }, this.info.idleTimeoutMs);
    try {
      return await this.active.response.next();
    } catch (error) {
      if (timedOut) throw idleTimeout(this.info.idleTimeoutMs);
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  private brokenBodyError(error: unknown): HubcacheError {
    const { handle } = this.requester;
    const code = networkErrorCode(error);
    const of = this.info.total === undefined ? "" : ` of ${this.info.total}`;
    if (code === "HUBCACHE_IDLE_TIMEOUT" || code === "UND_ERR_BODY_TIMEOUT") {
      return new HubcacheError(
        ErrorCode.TIMEOUT,
        `The download of ${handle} stalled: no data for ${Math.round(this.info.idleTimeoutMs / 1000)} s after ${this.received}${of} bytes.`,
        {
          handle,
          hint: "The host or network stopped sending. Try again; slow links can raise HUBCACHE_IDLE_TIMEOUT (seconds).",
          cause: error,
        },
      );
    }
    return new HubcacheError(
      ErrorCode.TRUNCATED,
      `The download of ${handle} was cut short after ${this.received}${of} bytes (${code ?? "connection closed"}).`,
      {
        handle,
        hint: "The connection broke or the host sent less than it announced. Try again; HUBCACHE_RETRIES sets how often hubcache retries by itself.",
        cause: error,
      },
    );
  }

  private closeActive(): void {
    this.active.controller.abort();
    this.active.dispose();
    this.active.response.cancel();
  }

  /** After a broken body: resume at `received`, or throw RestartRequired, or the final error. */
  private async recover(error: unknown): Promise<void> {
    this.closeActive();
    const broken = this.brokenBodyError(error);
    if (!isRetryableNetworkError(error)) throw broken;
    const { budget } = this.requester;
    const at = `${networkErrorCode(error) ?? "connection closed"} after ${this.received} bytes`;
    const { validator } = this.info;
    if (this.received === 0) {
      if (!(await this.requester.backoff(`${at}; trying again`))) throw gaveUp(broken, budget);
      const fresh = await this.requester.withRetries({});
      this.adopt(fresh);
      this.info = bodyInfo(fresh.response, this.info.idleTimeoutMs);
      return;
    }
    if (validator === undefined) {
      if (!(await this.requester.backoff(`${at}; the host cannot resume, starting over`))) {
        throw gaveUp(broken, budget);
      }
      throw new RestartRequired("the host sent no validator (ETag or Last-Modified), so it cannot resume");
    }
    if (!(await this.requester.backoff(`${at}; resuming at byte ${this.received}`))) {
      throw gaveUp(broken, budget);
    }
    let next: ActiveRequest;
    try {
      next = await this.requester.withRetries({ range: `bytes=${this.received}-`, "if-range": validator });
    } catch (failure) {
      if (failure instanceof HubcacheError && failure.status === 416) {
        throw new RestartRequired("the host refused the range (416)");
      }
      throw failure;
    }
    const { response } = next;
    const range = parseContentRange(response.header("content-range"));
    const etag = response.header("etag");
    const sameTotal = this.info.total === undefined || range?.total === this.info.total;
    const sameEtag = etag === undefined || this.info.etag === undefined || etag === this.info.etag;
    if (response.status === 206 && range?.start === this.received && sameTotal && sameEtag) {
      this.adopt(next);
      return;
    }
    response.cancel();
    next.dispose();
    throw new RestartRequired(
      response.status === 206
        ? `the host answered the range with Content-Range "${response.header("content-range") ?? ""}"`
        : `the host answered the range with HTTP ${response.status}, not 206`,
    );
  }

  private adopt(next: ActiveRequest): void {
    this.active = next;
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.finished = true;
    this.closeActive();
    callback(error);
  }
}
