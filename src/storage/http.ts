/**
 * Read-only http(s):// storage: stat is HEAD (or a one-byte ranged GET where HEAD is refused with
 * 403, 405 or 501), read is GET with an optional Range. HTTP has no listing and no writes; those
 * throw a coded error.
 */
import { Readable, Transform, type TransformCallback } from "node:stream";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import { type FetchFunction, httpStatusError, networkError } from "../net/http-errors.js";
import { USER_AGENT } from "../version.js";
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

export class HttpStorage implements Storage {
  readonly scheme = "http";
  readonly readOnly = true;
  readonly location: string;
  private readonly base: string;

  constructor(
    location: string,
    private readonly fetchImpl: FetchFunction = globalThis.fetch,
    private readonly signal?: AbortSignal,
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

  private async request(
    key: string,
    init: { method: string; headers?: Record<string, string> },
  ): Promise<Response> {
    const url = this.locationOf(key);
    try {
      return await this.fetchImpl(url, {
        method: init.method,
        headers: { "user-agent": USER_AGENT, "accept-encoding": "identity", ...init.headers },
        redirect: "follow",
        signal: this.signal ?? null,
      });
    } catch (error) {
      throw networkError(error, url, url);
    }
  }

  async stat(key: string): Promise<StoredObject | undefined> {
    let response = await this.request(key, { method: "HEAD" });
    let size: number | undefined;
    // Servers that refuse HEAD: 405/501, or 403 from a presigned URL that is signed for GET only
    // (S3, GCS). Ask for the first byte instead; a real 403 comes back from that GET too.
    if (response.status === 403 || response.status === 405 || response.status === 501) {
      response = await this.request(key, { method: "GET", headers: { range: "bytes=0-0" } });
      await response.body?.cancel().catch(() => undefined);
      const total = /\/(\d+)$/.exec(response.headers.get("content-range") ?? "")?.[1];
      if (total !== undefined) size = Number(total);
    }
    if (response.status === 404 || response.status === 410) return undefined;
    // An empty object has no first byte: "416, bytes */0" still says that it exists.
    const emptyObject = response.status === 416 && size === 0;
    if (!response.ok && !emptyObject) {
      throw httpStatusError(response.status, this.locationOf(key), response.url || this.locationOf(key));
    }
    const length = response.headers.get("content-length");
    size ??= length !== null && /^\d+$/.test(length) ? Number(length) : 0;
    const modified = response.headers.get("last-modified");
    return {
      key,
      size,
      modifiedMs: modified ? Date.parse(modified) : undefined,
      version: response.headers.get("etag") ?? undefined,
    };
  }

  async read(key: string, range?: ByteRange): Promise<ObjectBody> {
    const headers: Record<string, string> = range ? { range: `bytes=${range.start}-${range.end ?? ""}` } : {};
    const response = await this.request(key, { method: "GET", headers });
    const url = this.locationOf(key);
    if (response.status === 404 || response.status === 410) {
      await response.body?.cancel().catch(() => undefined);
      throw objectNotFound(url);
    }
    if (!response.ok) {
      await response.body?.cancel().catch(() => undefined);
      throw httpStatusError(response.status, url, response.url || url);
    }
    const raw = response.body
      ? Readable.fromWeb(response.body as WebReadableStream<Uint8Array>)
      : Readable.from([]);
    const lengthHeader = response.headers.get("content-length");
    let length = lengthHeader !== null && /^\d+$/.test(lengthHeader) ? Number(lengthHeader) : undefined;
    let body: Readable = raw;
    if (range && response.status === 200) {
      // The server ignored the Range: cut the bytes out ourselves.
      const take = range.end === undefined ? Number.MAX_SAFE_INTEGER : range.end - range.start + 1;
      body = raw.pipe(new Slice(range.start, take));
      raw.on("error", (error) => body.destroy(error));
      length = length === undefined ? undefined : Math.max(0, Math.min(take, length - range.start));
    }
    return { body, length, contentType: response.headers.get("content-type") ?? undefined };
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
