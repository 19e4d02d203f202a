/**
 * Read-only http(s):// storage: stat is HEAD (or a one-byte ranged GET where HEAD is refused with
 * 403, 405 or 501), read is GET with an optional Range. Both go through the download stack
 * (src/net): the same transport (node:http, or undici with a proxy, or the caller's fetch), retries,
 * idle timeout, minimum rate, resume and redaction as archive downloads. HTTP has no listing and no
 * writes; those throw a coded error.
 */
import { type Readable, Transform, type TransformCallback } from "node:stream";
import { HubcacheError } from "../errors.js";
import type { EventListener } from "../events.js";
import { type HttpStack, type NetworkSettings, httpStack } from "../net/client.js";
import { type Download, openDownload } from "../net/download.js";
import { type FetchFunction, httpStatusError } from "../net/http-errors.js";
import { type ActiveRequest, type RequestOptions, Requester } from "../net/request.js";
import { RetryBudget, type RetryPolicy } from "../net/retry.js";
import { objectNotFound, readOnlyStorage } from "./errors.js";
import { checkKey } from "./location.js";
import type { ByteRange, ObjectBody, Storage, StoredObject } from "./types.js";

/** Drop `skip` bytes, then pass at most `take` bytes: for servers that answer a Range with 200. */
class Slice extends Transform {
  constructor(
    private toSkip: number,
    private toTake: number,
  ) {
    super();
  }
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    let piece = chunk;
    if (this.toSkip > 0) {
      const dropped = Math.min(this.toSkip, piece.length);
      this.toSkip -= dropped;
      piece = piece.subarray(dropped);
    }
    if (piece.length > this.toTake) piece = piece.subarray(0, this.toTake);
    this.toTake -= piece.length;
    callback(null, piece.length > 0 ? piece : undefined);
  }
}

export interface HttpStorageOptions {
  network: NetworkSettings;
  retry: RetryPolicy;
  /** A fetch to use instead of hubcache's HTTP client. */
  fetch?: FetchFunction | undefined;
  signal?: AbortSignal | undefined;
  /** Retry events. Default: none. */
  emit?: EventListener | undefined;
}

const HEAD_REFUSED = new Set([403, 405, 501]);
const GONE = new Set([404, 410]);

/** Done with an answer whose body is not wanted. */
function release(active: ActiveRequest): void {
  active.response.cancel();
  active.dispose();
}

export class HttpStorage implements Storage {
  readonly scheme = "http";
  readonly readOnly = true;
  readonly location: string;
  private readonly base: string;
  private stack: HttpStack | undefined;

  constructor(
    location: string,
    private readonly options: HttpStorageOptions,
  ) {
    this.location = location;
    const url = new URL(location);
    url.hash = "";
    // Keys resolve below the location, so it is treated as a folder.
    if (!url.pathname.endsWith("/")) url.pathname += "/";
    this.base = url.toString();
  }

  locationOf(key: string): string {
    checkKey(key);
    if (!key) return this.location;
    const base = new URL(this.base);
    const query = base.search;
    base.search = "";
    const url = new URL(key.split("/").map(encodeURIComponent).join("/"), base);
    // A signed folder URL's query (if any) is kept on every file, as TF.js does with ?tfjs-format=file.
    url.search = query;
    return url.toString();
  }

  /** What every request of this storage shares; the URL is also the "handle" errors name. */
  private requestOptions(url: string): RequestOptions {
    // Idle sockets do not keep the process alive, so the stack lives as long as this storage.
    this.stack ??= httpStack(this.options.network, this.options.fetch);
    return {
      handle: url,
      transport: this.stack.transport,
      idleTimeoutMs: this.options.network.idleTimeoutMs,
      budget: new RetryBudget(this.options.retry),
      emit: this.options.emit ?? ((): void => undefined),
      signal: this.options.signal,
    };
  }

  private async answer(
    url: string,
    shape: { method: "GET" | "HEAD"; headers?: Record<string, string>; accept: (status: number) => boolean },
  ): Promise<ActiveRequest> {
    return new Requester(url, this.requestOptions(url)).withRetries(shape);
  }

  async stat(key: string): Promise<StoredObject | undefined> {
    const url = this.locationOf(key);
    let active = await this.answer(url, {
      method: "HEAD",
      accept: (s) => GONE.has(s) || HEAD_REFUSED.has(s),
    });
    release(active);
    let size: number | undefined;
    // Servers that refuse HEAD: 405/501, or 403 from a presigned URL that is signed for GET only
    // (S3, GCS). Ask for the first byte instead; a real 403 comes back from that GET too.
    if (HEAD_REFUSED.has(active.response.status)) {
      // An empty object has no first byte: "416, bytes */0" still says that it exists.
      const accept = (s: number): boolean => GONE.has(s) || s === 416;
      active = await this.answer(url, { method: "GET", headers: { range: "bytes=0-0" }, accept });
      release(active);
      const total = /\/(\d+)$/.exec(active.response.header("content-range") ?? "")?.[1];
      if (total !== undefined) size = Number(total);
    }
    const { response } = active;
    if (GONE.has(response.status)) return undefined;
    if (response.status === 416 && size !== 0) throw httpStatusError(416, url, response.url);
    const length = response.header("content-length");
    size ??= length !== undefined && /^\d+$/.test(length) ? Number(length) : 0;
    const modified = response.header("last-modified");
    return {
      key,
      size,
      modifiedMs: modified ? Date.parse(modified) : undefined,
      version: response.header("etag"),
    };
  }

  async read(key: string, range?: ByteRange): Promise<ObjectBody> {
    const url = this.locationOf(key);
    const headers: Record<string, string> = range ? { range: `bytes=${range.start}-${range.end ?? ""}` } : {};
    let download: Download;
    try {
      // A reader cannot start over, so a body that cannot be resumed fails with its own error.
      download = await openDownload(url, { ...this.requestOptions(url), headers, restartable: false });
    } catch (error) {
      if (error instanceof HubcacheError && GONE.has(error.status ?? 0)) throw objectNotFound(url, error);
      throw error;
    }
    const raw = download.stream;
    let length = download.contentLength;
    let body: Readable = raw;
    if (range && download.status === 200) {
      // The server ignored the Range: cut the bytes out ourselves.
      const take = range.end === undefined ? Number.MAX_SAFE_INTEGER : range.end - range.start + 1;
      body = raw.pipe(new Slice(range.start, take));
      raw.on("error", (error) => body.destroy(error));
      length = length === undefined ? undefined : Math.max(0, Math.min(take, length - range.start));
    }
    return { body, length, contentType: download.contentType };
  }

  // eslint-disable-next-line require-yield
  async *list(): AsyncIterable<StoredObject> {
    throw readOnlyStorage(this.location);
  }

  async write(): Promise<boolean> {
    throw readOnlyStorage(this.location);
  }

  async publish(): Promise<void> {
    throw readOnlyStorage(this.location);
  }

  async delete(): Promise<void> {
    throw readOnlyStorage(this.location);
  }
}
