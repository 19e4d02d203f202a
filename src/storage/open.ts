/** `openStorage(location)`: the Storage for any supported location, SDKs loaded only when needed. */
import type { Env } from "../config.js";
import type { EventListener } from "../events.js";
import type { NetworkSettings } from "../net/client.js";
import type { FetchFunction } from "../net/http-errors.js";
import type { RetryPolicy } from "../net/retry.js";
import { networkSettingsFromEnv, retryPolicyFromEnv } from "../net/settings.js";
import { GcsStorage, type GcsOptions } from "./gcs.js";
import { HttpStorage } from "./http.js";
import { LocalStorage } from "./local.js";
import { parseStorageLocation } from "./location.js";
import { S3Storage, type S3Options } from "./s3.js";
import type { Storage } from "./types.js";

export interface StorageOptions {
  /** Environment to read settings from (endpoints, region, project). Default: process.env. */
  env?: Env | undefined;
  s3?: S3Options | undefined;
  gcs?: GcsOptions | undefined;
  /** fetch for http(s) locations. Default: hubcache's HTTP client (proxies, TLS setting, connect timeout). */
  fetch?: FetchFunction | undefined;
  /** Timeouts, proxies, TLS and rate limits for http(s) locations. Default: read from `env`. */
  network?: NetworkSettings | undefined;
  /** Retries of each http(s) request. Default: HUBCACHE_RETRIES, else 5. */
  retry?: RetryPolicy | undefined;
  /** Retry events of http(s) requests. */
  onEvent?: EventListener | undefined;
  signal?: AbortSignal | undefined;
}

/**
 * The Storage rooted at `location`: `s3://bucket/prefix`, `gs://bucket/prefix`, `http(s)://...`
 * (read-only), `file://...` or a local path. Keys passed to it are relative to that root.
 */
export async function openStorage(location: string, options: StorageOptions = {}): Promise<Storage> {
  const env = options.env ?? process.env;
  const parsed = parseStorageLocation(location);
  switch (parsed.scheme) {
    case "s3":
      return S3Storage.open(parsed.bucket, parsed.prefix, options.s3 ?? {}, env);
    case "gs":
      return GcsStorage.open(parsed.bucket, parsed.prefix, options.gcs ?? {}, env);
    case "http":
      return new HttpStorage(parsed.url, {
        network: options.network ?? networkSettingsFromEnv(env),
        retry: options.retry ?? retryPolicyFromEnv(env),
        fetch: options.fetch,
        signal: options.signal,
        emit: options.onEvent,
      });
    case "file":
      return new LocalStorage(parsed.dir);
  }
}
