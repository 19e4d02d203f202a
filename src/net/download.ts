/**
 * One download as one continuous byte stream, whatever the network does:
 * - failed requests are retried (see request.ts);
 * - no bytes for `idleTimeoutMs`, or fewer than the transport's minimum rate over its window, or
 *   the download's deadline passing, break the body (the first two are retried, the last is final);
 * - when the body breaks after bytes arrived, the rest is asked for with Range + If-Range and,
 *   if the host answers 206 with the right Content-Range, appended to the same stream; otherwise
 *   the stream fails with RestartRequired and the caller starts over from an empty directory;
 * - a body shorter than its Content-Length is a broken body, not an end.
 * Nothing here ever shows a URL unredacted.
 */
import { Readable } from "node:stream";
import { ErrorCode, HubcacheError, RestartRequired } from "../errors.js";
import { type ActiveRequest, type RequestOptions, Requester, gaveUp, idleTimeout } from "./request.js";
import { isRetryableNetworkError, networkErrorCode } from "./retry.js";
import { SpeedMeter, formatRate, isTooSlow } from "./transfer-limits.js";
import type { Reply } from "./transport.js";

export type { AttemptHooks } from "./request.js";
export { WAITING_BEAT_MS } from "./request.js";
export type { Reply, Transport } from "./transport.js";

export interface DownloadOptions extends RequestOptions {
  /** Headers of the first request (e.g. a Range); a ranged download is never resumed. */
  headers?: Record<string, string> | undefined;
  /**
   * false: a body that cannot be resumed fails with its own error instead of RestartRequired
   * (for readers that cannot start over). Default true.
   */
  restartable?: boolean | undefined;
}

export interface Download {
  /** The body, continuous across resumed requests. */
  stream: Readable;
  /** Total size, when the host said (Content-Length of an unencoded body). */
  contentLength: number | undefined;
  contentType: string | undefined;
  /** The status of the first answer (200, or 206 for a ranged download). */
  status: number;
  /** Where the bytes came from after redirects (redact before showing). */
  finalUrl: string;
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

/** Content-Length, when it counts the bytes we read (an encoded body is decoded, so it does not). */
export function lengthOf(response: Reply): number | undefined {
  const encoding = response.header("content-encoding");
  if (encoding && encoding.trim().toLowerCase() !== "identity") return undefined;
  const length = response.header("content-length");
  return length !== undefined && /^\d+$/.test(length.trim()) ? Number(length) : undefined;
}

interface BodyInfo {
  total: number | undefined;
  /** For If-Range; undefined when this body cannot be resumed. */
  validator: string | undefined;
  etag: string | undefined;
}

function bodyInfo(response: Reply, resumable: boolean): BodyInfo {
  const total = lengthOf(response);
  const acceptsRanges = (response.header("accept-ranges") ?? "").toLowerCase() !== "none";
  return {
    total,
    validator: resumable && total !== undefined && acceptsRanges ? validatorOf(response) : undefined,
    etag: response.header("etag"),
  };
}

/** GET the file (retrying as needed) and return its body as one resumable stream. */
export async function openDownload(url: string, options: DownloadOptions): Promise<Download> {
  const requester = new Requester(url, options);
  const headers = options.headers ?? {};
  const first = await requester.withRetries({ headers });
  const { response } = first;
  const body = new ResumableBody(requester, first, {
    headers,
    resumable: headers.range === undefined,
    restartable: options.restartable ?? true,
  });
  return {
    stream: body,
    contentLength: body.total,
    contentType: response.header("content-type"),
    status: response.status,
    finalUrl: response.url || url,
  };
}

interface BodyPolicy {
  /** Headers of a fresh request (after a failure before any byte). */
  headers: Record<string, string>;
  /** May a break be resumed with a Range? */
  resumable: boolean;
  /** May a break that cannot be resumed throw RestartRequired? */
  restartable: boolean;
}

/**
 * The idle timeout and the deadline of a body's reads, with one timer for all of them: a timer set
 * and cleared for every 64 KiB read cost more main-thread time than the read. The timer checks,
 * when it fires, whether bytes came in the meantime, and waits on for the rest if so.
 */
class ReadWatch {
  private timer: NodeJS.Timeout | undefined;
  private lastAt = 0;
  private fired: "idle" | "deadline" | undefined;
  constructor(
    private readonly requester: Requester,
    private readonly onFire: () => void,
  ) {}
  /** The body waits for the network from now on. */
  start(): void {
    this.lastAt = Date.now();
    this.fired = undefined;
    if (this.timer === undefined) this.arm();
  }
  /** Bytes arrived: restart the idle clock; returns the ms waited for them. */
  arrived(): number {
    const now = Date.now();
    const waited = now - this.lastAt;
    this.lastAt = now;
    return waited;
  }
  /** The body no longer waits (its reader is full, or it is over). */
  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
  /** What fired (once), to explain an aborted read. */
  takeFired(): "idle" | "deadline" | undefined {
    const fired = this.fired;
    this.fired = undefined;
    return fired;
  }
  private arm(): void {
    const idleLeft = this.lastAt + this.requester.idleTimeoutMs - Date.now();
    const deadlineLeft = this.requester.timeLeft();
    if (deadlineLeft <= idleLeft) {
      this.timer = setTimeout(() => this.fire("deadline"), Math.max(0, deadlineLeft));
      return;
    }
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        if (Date.now() - this.lastAt >= this.requester.idleTimeoutMs) this.fire("idle");
        else this.arm();
      },
      Math.max(0, idleLeft),
    );
  }
  private fire(kind: "idle" | "deadline"): void {
    this.timer = undefined;
    this.fired = kind;
    this.onFire();
  }
}

class ResumableBody extends Readable {
  private received = 0;
  private pumping = false;
  private finished = false;
  private info: BodyInfo;
  private meter: SpeedMeter;
  private readonly watch: ReadWatch;

  constructor(
    private readonly requester: Requester,
    private active: ActiveRequest,
    private readonly policy: BodyPolicy,
  ) {
    super({ highWaterMark: 1 << 20 });
    this.info = bodyInfo(active.response, policy.resumable);
    this.meter = new SpeedMeter(requester.limits);
    this.watch = new ReadWatch(requester, () => this.active.controller.abort());
  }

  get total(): number | undefined {
    return this.info.total;
  }

  override _read(): void {
    if (this.pumping || this.finished) return;
    this.pumping = true;
    void this.pump();
  }

  private async pump(): Promise<void> {
    // The idle clock runs only while this body waits for the network, not while its reader is full.
    this.watch.start();
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
    } finally {
      this.watch.stop();
    }
  }

  /** The next bytes, recovering from a broken body by resuming or asking for a restart. */
  private async nextChunk(): Promise<Buffer | null> {
    for (;;) {
      try {
        const chunk = await this.readGuarded();
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
        // Backoffs and new requests have their own clocks.
        this.watch.stop();
        await this.recover(error);
        this.watch.start();
      }
    }
  }

  /** One read under the idle timeout, the deadline and the minimum rate. */
  private async readGuarded(): Promise<Buffer | null> {
    let chunk: Buffer | null;
    try {
      chunk = await this.active.response.next();
    } catch (error) {
      const fired = this.watch.takeFired();
      if (fired === "deadline") throw this.requester.pastDeadline(this.progress());
      if (fired === "idle") throw idleTimeout(this.requester.idleTimeoutMs);
      throw error;
    }
    if (chunk !== null) this.meter.record(chunk.length, this.watch.arrived());
    return chunk;
  }

  private progress(): string {
    const of = this.info.total === undefined ? "" : ` of ${this.info.total}`;
    return `${this.received}${of} bytes`;
  }

  private brokenBodyError(error: unknown): HubcacheError {
    const { handle } = this.requester;
    const code = networkErrorCode(error);
    if (isTooSlow(error)) {
      const { limit } = error;
      return new HubcacheError(
        ErrorCode.TIMEOUT,
        `The download of ${handle} was too slow: ${formatRate(error.bytesPerSec)} over the last ${Math.round(error.windowMs / 1000)} s, below the minimum of ${formatRate(limit)} (after ${this.progress()}).`,
        {
          handle,
          hint: "The host or network is nearly stalled. Try again later; HUBCACHE_MIN_SPEED (bytes/s, 0 turns the check off) and HUBCACHE_MIN_SPEED_TIME (seconds) set the limit (options minSpeedBytesPerSec, minSpeedWindowMs).",
          cause: error,
        },
      );
    }
    if (code === "HUBCACHE_IDLE_TIMEOUT" || code === "UND_ERR_BODY_TIMEOUT") {
      return new HubcacheError(
        ErrorCode.TIMEOUT,
        `The download of ${handle} stalled: no data for ${Math.round(this.requester.idleTimeoutMs / 1000)} s after ${this.progress()}.`,
        {
          handle,
          hint: "The host or network stopped sending. Try again; slow links can raise HUBCACHE_IDLE_TIMEOUT (seconds).",
          cause: error,
        },
      );
    }
    return new HubcacheError(
      ErrorCode.TRUNCATED,
      `The download of ${handle} was cut short after ${this.progress()} (${code ?? "connection closed"}).`,
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

  /** After a broken body: start again, resume at `received`, or throw RestartRequired or the final error. */
  private async recover(error: unknown): Promise<void> {
    this.closeActive();
    const broken = this.brokenBodyError(error);
    if (!isRetryableNetworkError(error)) throw broken;
    const at = `${networkErrorCode(error) ?? "connection closed"} after ${this.received} bytes`;
    if (this.received === 0) {
      await this.requester.backoff(`${at}; trying again`, broken);
      this.adopt(await this.requester.withRetries({ headers: this.policy.headers }));
      this.info = bodyInfo(this.active.response, this.policy.resumable);
      return;
    }
    if (this.info.validator === undefined) {
      if (!this.policy.restartable) {
        throw gaveUp(broken, this.requester.budget, {
          reason: "the host cannot resume",
          hint: "The host sends no ETag or Last-Modified, so a broken body cannot be continued.",
        });
      }
      await this.requester.backoff(`${at}; the host cannot resume, starting over`, broken);
      throw new RestartRequired("the host sent no validator (ETag or Last-Modified), so it cannot resume");
    }
    await this.requester.backoff(`${at}; resuming at byte ${this.received}`, broken);
    await this.resumeFrom(this.info.validator);
  }

  /** Ask for the rest with Range + If-Range; adopt the answer only if it continues this body. */
  private async resumeFrom(validator: string): Promise<void> {
    let next: ActiveRequest;
    try {
      next = await this.requester.withRetries({
        headers: { range: `bytes=${this.received}-`, "if-range": validator },
      });
    } catch (failure) {
      if (failure instanceof HubcacheError && failure.status === 416) {
        throw this.restart("the host refused the range (416)", failure);
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
    throw this.restart(
      response.status === 206
        ? `the host answered the range with Content-Range "${response.header("content-range") ?? ""}"`
        : `the host answered the range with HTTP ${response.status}, not 206`,
    );
  }

  /** RestartRequired, or for a reader that cannot start over, a coded error saying why. */
  private restart(why: string, cause?: unknown): Error {
    if (this.policy.restartable) return new RestartRequired(why);
    return new HubcacheError(
      ErrorCode.TRUNCATED,
      `The download of ${this.requester.handle} broke after ${this.progress()} and could not be resumed: ${why}.`,
      { handle: this.requester.handle, hint: "Try again.", cause },
    );
  }

  private adopt(next: ActiveRequest): void {
    this.active = next;
    this.meter = new SpeedMeter(this.requester.limits);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.finished = true;
    this.watch.stop();
    this.closeActive();
    callback(error);
  }
}
