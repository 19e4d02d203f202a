/**
 * What `resolve` and `load` run with: every option after TF Hub's precedence (explicit option >
 * non-empty environment variable > command-line flag > default) and the defaults. Read on every
 * call, never at import. The readers of single variables and flags are in config.ts.
 */
import {
  type Env,
  type CacheDirSource,
  type TfhubFlags,
  chooseCacheDirWithSource,
  chooseLoadFormat,
  envFlag,
  envNumber,
  optionNumber,
  readTfhubFlags,
} from "./config.js";
import { ErrorCode, HubcacheError } from "./errors.js";
import type { HubcacheEvent, ProgressEvent } from "./events.js";
import type { LoadFormat, ModelFormat } from "./handle.js";
import type { NetworkSettings } from "./net/client.js";
import type { Readable } from "node:stream";
import type { FetchFunction } from "./net/http-errors.js";
import { readProxyEnv } from "./net/proxy.js";
import { type TransferOptions, readTransferLimits } from "./net/transfer-limits.js";
import { DEFAULT_RETRY_POLICY } from "./net/retry.js";
import { DEFAULTS } from "./settings-table.js";
import { parseSize } from "./units.js";
import { isRemoteLocation } from "./storage/location.js";
import type { StorageOptions } from "./storage/open.js";

/**
 * Options of `resolve` (and `load`, `modelInfo`, the cache management functions). Each setting's
 * environment variable, CLI flag and default are listed once, in src/settings-table.ts, from which
 * docs/settings.md and the CLI's help are generated.
 */
export interface ResolveOptions extends TransferOptions {
  /** Cache directory; wins over TFHUB_CACHE_DIR and --tfhub_cache_dir. May be s3://… or gs://…. */
  cacheDir?: string | undefined;
  /**
   * A shared cache on object storage (s3://… or gs://…) behind the local one: a local miss looks
   * there before asking the hub, and downloads are published to it. Default: HUBCACHE_SHARED_CACHE.
   */
  sharedCache?: string | undefined;
  /** Settings for s3:// and gs:// locations (endpoint, region, credentials, project). Default: the SDKs' own. */
  storage?: Pick<StorageOptions, "s3" | "gcs"> | undefined;
  /** COMPRESSED (download and cache), UNCOMPRESSED (return the host's remote location) or AUTO (= COMPRESSED). */
  loadFormat?: LoadFormat | undefined;
  /** Force the hosting protocol family; by default TF.js handles are detected from the URL. */
  modelFormat?: ModelFormat | undefined;
  /** Resolve from the cache only; a miss fails at once with ERR_HUBCACHE_OFFLINE. Default: HUBCACHE_OFFLINE. */
  offline?: boolean | undefined;
  /** How long a lock may show no progress before it is taken over, in ms. Default: HUBCACHE_LOCK_TIMEOUT (defaults: docs/settings.md). */
  lockTimeoutMs?: number | undefined;
  /** Stop extracting past this many bytes (ERR_HUBCACHE_TOO_LARGE). Default: HUBCACHE_MAX_EXTRACT_BYTES (defaults: docs/settings.md). */
  maxExtractBytes?: number | undefined;
  /** Refuse archives with more files and folders than this (ERR_HUBCACHE_TOO_LARGE). Default: HUBCACHE_MAX_FILES (defaults: docs/settings.md). */
  maxFiles?: number | undefined;
  /**
   * Leave at least this many bytes free on the cache's disk: extraction stops before crossing it
   * (ERR_HUBCACHE_DISK_FULL). Default: HUBCACHE_MIN_FREE_BYTES (defaults: docs/settings.md). 0 turns the guard off.
   */
  minFreeBytes?: number | undefined;
  /**
   * Keep the cache at most this many bytes: after each download, least recently used entries are
   * removed (never the one just downloaded, never one in use). Default: HUBCACHE_MAX_SIZE ("10GB",
   * "500MiB" or bytes), else no cap.
   */
  maxCacheBytes?: number | undefined;
  /** A hit records the entry's last use at most this often, in ms. Default: HUBCACHE_TOUCH_INTERVAL (defaults: docs/settings.md). */
  touchIntervalMs?: number | undefined;
  /** TCP/TLS connect timeout in ms. Default: HUBCACHE_CONNECT_TIMEOUT (defaults: docs/settings.md). */
  connectTimeoutMs?: number | undefined;
  /** Longest wait for response headers or the next body bytes, in ms. Default: HUBCACHE_IDLE_TIMEOUT (defaults: docs/settings.md). */
  idleTimeoutMs?: number | undefined;
  /** Retries of one download (connection errors, stalls, 408, 429, 5xx). Default: HUBCACHE_RETRIES (defaults: docs/settings.md). */
  retries?: number | undefined;
  /** Backoff before the first retry in ms, doubling each time, with jitter; Retry-After wins. Default: docs/settings.md. */
  retryDelayMs?: number | undefined;
  /** Every event: cache hits, downloads, lock waits, progress... */
  onEvent?: ((event: HubcacheEvent) => void) | undefined;
  /** Download progress only (throttled to about 10 per second, plus a last one with `done: true`). */
  onProgress?: ((event: ProgressEvent) => void) | undefined;
  /**
   * A fetch implementation to use instead of hubcache's own client. hubcache's client applies the
   * connect timeout, HTTP_PROXY/HTTPS_PROXY/NO_PROXY and TFHUB_DISABLE_CERT_VALIDATION; a custom
   * fetch must do those itself (hubcache still applies the idle timeout, retries and resume).
   */
  fetch?: FetchFunction | undefined;
  signal?: AbortSignal | undefined;
  /** Environment to read settings from. Default: process.env. */
  env?: Env | undefined;
  /** TF Hub flags (`--tfhub_cache_dir`, `--tfhub_model_load_format`). Default: read from process.argv. */
  flags?: TfhubFlags | undefined;
  /**
   * A `hubcache serve` mirror (http://host:port) that every http(s) request goes through; cache
   * keys stay the handles' own. No fallback to the internet. Default: HUBCACHE_MIRROR.
   */
  mirror?: string | undefined;
  /** The mirror's token, sent to the mirror only and never stored. Default: HUBCACHE_MIRROR_TOKEN. */
  mirrorToken?: string | undefined;
}

/**
 * Internal (never set by callers, not exported by the package): sees each attempt of an http
 * archive download, its received bytes after resumes (one continuous stream), and returns the
 * stream to extract instead. `hubcache serve` tees them to the clients waiting for that archive.
 * A second call in one resolve means the download started over from byte 0.
 */
export type ArchiveTap = (download: { stream: Readable; contentLength: number | undefined }) => Readable;
export const ARCHIVE_TAP = Symbol("hubcache.archiveTap");
export type TappedOptions = ResolveOptions & { [ARCHIVE_TAP]?: ArchiveTap | undefined };

export const DEFAULT_LOCK_TIMEOUT_MS = DEFAULTS.lockTimeoutMs;
export const DEFAULT_CONNECT_TIMEOUT_MS = DEFAULTS.connectTimeoutMs;
/** A hit records last use at most hourly, as Go's build cache does. */
export const DEFAULT_TOUCH_INTERVAL_MS = 3_600_000;
// Below the lock's 60 s stale window, so a stalled holder retries (and shows progress) before waiters may take over.
export const DEFAULT_IDLE_TIMEOUT_MS = DEFAULTS.idleTimeoutMs;

/** Settings after precedence is applied. */
export interface ResolvedSettings {
  cacheDir: string;
  /** Which setting chose `cacheDir` (the option or --cache-dir, TFHUB_CACHE_DIR, --tfhub_cache_dir, the default). */
  cacheDirSource: CacheDirSource;
  sharedCache: string | undefined;
  loadFormat: LoadFormat;
  offline: boolean;
  lockTimeoutMs: number;
  maxExtractBytes: number | undefined;
  maxFiles: number | undefined;
  minFreeBytes: number | undefined;
  maxCacheBytes: number | undefined;
  touchIntervalMs: number;
  retries: number;
  retryDelayMs: number;
  network: NetworkSettings;
}

export function resolveSettings(options: ResolveOptions = {}): ResolvedSettings {
  const env = options.env ?? process.env;
  const flags = options.flags ?? readTfhubFlags(process.argv.slice(2));
  const seconds = (name: string): number | undefined => {
    const value = envNumber(env, name);
    return value === undefined ? undefined : value * 1000;
  };
  const option = (name: keyof ResolveOptions): number | undefined =>
    optionNumber(name, options[name] as number | undefined);
  const { cacheDir, source: cacheDirSource } = chooseCacheDirWithSource({
    cacheDir: options.cacheDir,
    env,
    flags,
  });
  const sharedCache = options.sharedCache || env.HUBCACHE_SHARED_CACHE || undefined;
  checkCacheSettings(cacheDir, sharedCache);
  return {
    cacheDir,
    cacheDirSource,
    sharedCache,
    loadFormat: chooseLoadFormat(options.loadFormat, env, flags),
    offline: options.offline ?? envFlag(env, "HUBCACHE_OFFLINE"),
    lockTimeoutMs: option("lockTimeoutMs") ?? seconds("HUBCACHE_LOCK_TIMEOUT") ?? DEFAULT_LOCK_TIMEOUT_MS,
    maxExtractBytes: option("maxExtractBytes") ?? envNumber(env, "HUBCACHE_MAX_EXTRACT_BYTES"),
    maxFiles: option("maxFiles") ?? envNumber(env, "HUBCACHE_MAX_FILES"),
    minFreeBytes: option("minFreeBytes") ?? envNumber(env, "HUBCACHE_MIN_FREE_BYTES"),
    maxCacheBytes: option("maxCacheBytes") ?? envSize(env, "HUBCACHE_MAX_SIZE"),
    touchIntervalMs:
      option("touchIntervalMs") ?? seconds("HUBCACHE_TOUCH_INTERVAL") ?? DEFAULT_TOUCH_INTERVAL_MS,
    retries: Math.floor(
      option("retries") ?? envNumber(env, "HUBCACHE_RETRIES") ?? DEFAULT_RETRY_POLICY.retries,
    ),
    retryDelayMs: option("retryDelayMs") ?? DEFAULT_RETRY_POLICY.baseDelayMs,
    network: {
      connectTimeoutMs:
        option("connectTimeoutMs") ?? seconds("HUBCACHE_CONNECT_TIMEOUT") ?? DEFAULT_CONNECT_TIMEOUT_MS,
      idleTimeoutMs: option("idleTimeoutMs") ?? seconds("HUBCACHE_IDLE_TIMEOUT") ?? DEFAULT_IDLE_TIMEOUT_MS,
      // Exactly as TF Hub: only the string "true" turns certificate checks off.
      insecureTls: env.TFHUB_DISABLE_CERT_VALIDATION === "true",
      proxy: readProxyEnv(env),
      limits: readTransferLimits(env, options),
    },
  };
}

/** A size from the environment ("10GB", "500MiB", bytes), with a clear error when it is not one. */
function envSize(env: Env, name: string): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw.trim() === "") return undefined;
  const bytes = parseSize(raw);
  if (bytes === undefined) {
    throw new HubcacheError(ErrorCode.INVALID_CONFIG, `${name}="${raw}" is not a size.`, {
      hint: `Unset ${name} or give it a size such as 10GB, 500MiB or a number of bytes.`,
    });
  }
  return bytes;
}

/** Check the cache settings before any work: a shared cache only makes sense beside a local one. */
export function checkCacheSettings(cacheDir: string, sharedCache: string | undefined): void {
  if (sharedCache === undefined) return;
  if (isRemoteLocation(cacheDir)) {
    throw new HubcacheError(
      ErrorCode.INVALID_CONFIG,
      `HUBCACHE_SHARED_CACHE (${sharedCache}) needs a local cache dir, but the cache dir is ${cacheDir}.`,
      {
        hint: "Use either TFHUB_CACHE_DIR on object storage (every machine reads it remotely) or a local TFHUB_CACHE_DIR plus HUBCACHE_SHARED_CACHE (two tiers), not both.",
      },
    );
  }
  if (/^https?:\/\//i.test(sharedCache)) {
    throw new HubcacheError(
      ErrorCode.INVALID_CONFIG,
      `HUBCACHE_SHARED_CACHE (${sharedCache}) must be writable storage.`,
      {
        hint: "Use s3://BUCKET/prefix or gs://BUCKET/prefix.",
      },
    );
  }
}
