/** `resolve(handle)`: a model handle becomes a location (a local directory in compressed mode). */
import { type Stats, promises as fs } from "node:fs";
import path from "node:path";
import { type CacheContext, checkCacheSettings, ensureCachedModel } from "./cache/cache-modes.js";
import type { Downloader } from "./cache/local-cache.js";
import {
  type Env,
  type TfhubFlags,
  chooseCacheDir,
  chooseLoadFormat,
  envFlag,
  envNumber,
  optionNumber,
  readTfhubFlags,
} from "./config.js";
import { ErrorCode, HubcacheError, RestartRequired, errnoCode } from "./errors.js";
import { type EventListener, type HubcacheEvent, type ProgressEvent, emitter } from "./events.js";
import { loadTar } from "./extract/extract.js";
import { extractWithProgress } from "./extract/with-progress.js";
import { type LoadFormat, type ModelFormat, type ParsedHandle, parseHandle } from "./handle.js";
import { type NetworkSettings, httpStack } from "./net/client.js";
import { type Transport, openDownload } from "./net/download.js";
import type { FetchFunction } from "./net/http-errors.js";
import { readProxyEnv } from "./net/proxy.js";
import { DEFAULT_RETRY_POLICY, RetryBudget } from "./net/retry.js";
import { type TransferOptions, readTransferLimits } from "./net/transfer-limits.js";
import { resolveUncompressed } from "./net/uncompressed.js";
import { redactUrl } from "./redact.js";
import { extractFromStorage } from "./storage/archive.js";
import { objectNotFound } from "./storage/errors.js";
import { type StorageOptions, openStorage } from "./storage/open.js";
import { folderExists } from "./storage/transfer.js";

export interface ResolveOptions extends TransferOptions {
  /** Cache directory; wins over TFHUB_CACHE_DIR and --tfhub_cache_dir. May be s3://… or gs://…. */
  cacheDir?: string;
  /**
   * A shared cache on object storage (s3://… or gs://…) behind the local one: a local miss looks
   * there before asking the hub, and downloads are published to it. Default: HUBCACHE_SHARED_CACHE.
   */
  sharedCache?: string;
  /** Settings for s3:// and gs:// locations (endpoint, region, credentials, project). Default: the SDKs' own. */
  storage?: Pick<StorageOptions, "s3" | "gcs">;
  /** COMPRESSED (download and cache), UNCOMPRESSED (return the host's remote location) or AUTO (= COMPRESSED). */
  loadFormat?: LoadFormat;
  /** Force the hosting protocol family; by default TF.js handles are detected from the URL. */
  modelFormat?: ModelFormat;
  /** Resolve from the cache only; a miss fails at once with ERR_HUBCACHE_OFFLINE. Default: HUBCACHE_OFFLINE. */
  offline?: boolean;
  /** How long a lock may show no progress before it is taken over, in ms. Default: HUBCACHE_LOCK_TIMEOUT (s) or 60 s. */
  lockTimeoutMs?: number;
  /** Stop extracting past this many bytes (ERR_HUBCACHE_TOO_LARGE). Default: HUBCACHE_MAX_EXTRACT_BYTES, else no fixed limit (the free-space guard still applies). */
  maxExtractBytes?: number;
  /**
   * Leave at least this many bytes free on the cache's disk: extraction stops before crossing it
   * (ERR_HUBCACHE_DISK_FULL). Default: HUBCACHE_MIN_FREE_BYTES, else 5 % of the disk, at most 1 GiB. 0 turns the guard off.
   */
  minFreeBytes?: number;
  /** TCP/TLS connect timeout in ms. Default: HUBCACHE_CONNECT_TIMEOUT (s) or 30 s. */
  connectTimeoutMs?: number;
  /** Longest wait for response headers or the next body bytes, in ms. Default: HUBCACHE_IDLE_TIMEOUT (s) or 30 s. */
  idleTimeoutMs?: number;
  /** Retries of one download (connection errors, stalls, 408, 429, 5xx). Default: HUBCACHE_RETRIES or 5. */
  retries?: number;
  /** Backoff before the first retry in ms, doubling each time, with jitter; Retry-After wins. Default 1000. */
  retryDelayMs?: number;
  /** Every event: cache hits, downloads, lock waits, progress... */
  onEvent?: (event: HubcacheEvent) => void;
  /** Download progress only (throttled to about 10 per second, plus a last one with `done: true`). */
  onProgress?: (event: ProgressEvent) => void;
  /**
   * A fetch implementation to use instead of hubcache's own client. hubcache's client applies the
   * connect timeout, HTTP_PROXY/HTTPS_PROXY/NO_PROXY and TFHUB_DISABLE_CERT_VALIDATION; a custom
   * fetch must do those itself (hubcache still applies the idle timeout, retries and resume).
   */
  fetch?: FetchFunction;
  signal?: AbortSignal;
  /** Environment to read settings from. Default: process.env. */
  env?: Env;
  /** TF Hub flags (`--tfhub_cache_dir`, `--tfhub_model_load_format`). Default: read from process.argv. */
  flags?: TfhubFlags;
}

export const DEFAULT_LOCK_TIMEOUT_MS = 60_000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 30_000;
// Below the lock's 60 s stale window, so a stalled holder retries (and shows progress) before waiters may take over.
export const DEFAULT_IDLE_TIMEOUT_MS = 30_000;

/** Settings after precedence is applied. */
export interface ResolvedSettings {
  cacheDir: string;
  sharedCache: string | undefined;
  loadFormat: LoadFormat;
  offline: boolean;
  lockTimeoutMs: number;
  maxExtractBytes: number | undefined;
  minFreeBytes: number | undefined;
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
  const cacheDir = chooseCacheDir({ cacheDir: options.cacheDir, env, flags });
  const sharedCache = options.sharedCache || env.HUBCACHE_SHARED_CACHE || undefined;
  checkCacheSettings(cacheDir, sharedCache);
  return {
    cacheDir,
    sharedCache,
    loadFormat: chooseLoadFormat(options.loadFormat, env, flags),
    offline: options.offline ?? envFlag(env, "HUBCACHE_OFFLINE"),
    lockTimeoutMs: option("lockTimeoutMs") ?? seconds("HUBCACHE_LOCK_TIMEOUT") ?? DEFAULT_LOCK_TIMEOUT_MS,
    maxExtractBytes: option("maxExtractBytes") ?? envNumber(env, "HUBCACHE_MAX_EXTRACT_BYTES"),
    minFreeBytes: option("minFreeBytes") ?? envNumber(env, "HUBCACHE_MIN_FREE_BYTES"),
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

/**
 * Turn a model handle into a location: a local directory for http(s) and archive handles
 * (downloaded once into the TF Hub cache), the path itself for local paths, or the remote
 * location in UNCOMPRESSED mode.
 */
export async function resolve(handle: string, options: ResolveOptions = {}): Promise<string> {
  const settings = resolveSettings(options);
  const parsed = parseHandle(handle, {
    loadFormat: settings.loadFormat,
    modelFormat: options.modelFormat ?? "auto",
  });
  const emit = emitter(options.onEvent, options.onProgress);
  return resolveParsed(parsed, settings, options, emit);
}

async function resolveParsed(
  parsed: ParsedHandle,
  settings: ResolvedSettings,
  options: ResolveOptions,
  emit: EventListener,
): Promise<string> {
  switch (parsed.kind) {
    case "path":
      return resolveLocalPath(parsed.handle, parsed.path);
    case "http-uncompressed":
      if (settings.offline) {
        throw new HubcacheError(
          ErrorCode.OFFLINE,
          `Offline mode is on, and UNCOMPRESSED mode must ask the host for ${parsed.handle}.`,
          { handle: parsed.handle, hint: "Use COMPRESSED mode with a cached model, or go online." },
        );
      }
      return withHttpClient(settings, options, parsed.handle, emit, async (fetch) => {
        const location = await resolveUncompressed(parsed, { fetch, signal: options.signal });
        // As TF Hub's PathResolver: the location must exist (read through the same HTTP stack).
        return checkRemoteFolder(parsed.handle, location, { ...options, fetch });
      });
    case "object-archive":
      return resolveObjectArchive(parsed, settings, options, emit);
    case "object-folder":
      if (settings.offline) {
        throw new HubcacheError(
          ErrorCode.OFFLINE,
          `Offline mode is on, and ${parsed.handle} can only be checked on object storage.`,
          { handle: parsed.handle, hint: "Go online, or copy the model to a local path." },
        );
      }
      return checkRemoteFolder(parsed.handle, parsed.handle, options);
    case "http-archive":
      return resolveHttpArchive(parsed, settings, options, emit);
  }
}

async function resolveLocalPath(handle: string, localPath: string): Promise<string> {
  await statLocalPath(handle, localPath);
  return localPath;
}

/** A local path handle's stat, or ERR_HUBCACHE_NOT_FOUND saying so. */
export async function statLocalPath(handle: string, localPath: string): Promise<Stats> {
  try {
    return await fs.stat(localPath);
  } catch (error) {
    if (errnoCode(error) === "ENOENT" || errnoCode(error) === "ENOTDIR") {
      throw new HubcacheError(ErrorCode.NOT_FOUND, `${handle} does not exist.`, {
        handle,
        hint: "Check the path, or give a URL (https://tfhub.dev/...) to download a model.",
      });
    }
    throw error;
  }
}

function storageOptions(options: ResolveOptions): StorageOptions {
  return { ...options.storage, env: options.env, fetch: options.fetch, signal: options.signal };
}

/**
 * A model folder used in place (gs://, s3:// folders, and UNCOMPRESSED locations): it must exist,
 * as TF Hub's PathResolver checks; then the location is returned as it is.
 */
async function checkRemoteFolder(handle: string, location: string, options: ResolveOptions): Promise<string> {
  const storage = await openStorage(location, storageOptions(options));
  if (!(await folderExists(storage, ""))) {
    const error = objectNotFound(location);
    throw new HubcacheError(ErrorCode.NOT_FOUND, error.message, {
      handle,
      hint:
        location === handle
          ? "Check the bucket and path; a model folder holds saved_model.pb (or model.json) and its files."
          : `The host sent ${location} as the model's location, but nothing is there. Unset TFHUB_MODEL_LOAD_FORMAT to download the model instead.`,
    });
  }
  return location;
}

/** Cache settings and the callbacks every cached download shares. */
function cacheContext(
  handle: string,
  settings: ResolvedSettings,
  options: ResolveOptions,
  emit: EventListener,
): CacheContext {
  return {
    handle,
    cacheDir: settings.cacheDir,
    sharedCache: settings.sharedCache,
    offline: settings.offline,
    lockTimeoutMs: settings.lockTimeoutMs,
    emit,
    signal: options.signal,
    storage: storageOptions(options),
  };
}

/** gs:// and s3:// archives: streamed from the bucket into the cache, like http archives. */
async function resolveObjectArchive(
  parsed: Extract<ParsedHandle, { kind: "object-archive" }>,
  settings: ResolvedSettings,
  options: ResolveOptions,
  emit: EventListener,
): Promise<string> {
  const download: Downloader = async (tmpDir, touch) => {
    const storage = await openStorage(`${parsed.scheme}://${parsed.bucket}`, storageOptions(options));
    return extractFromStorage(storage, parsed.key, tmpDir, {
      handle: parsed.handle,
      emit,
      maxExtractBytes: settings.maxExtractBytes,
      minFreeBytes: settings.minFreeBytes,
      signal: options.signal,
      touch,
    });
  };
  return ensureCachedModel(cacheContext(parsed.handle, settings, options, emit), download);
}

async function resolveHttpArchive(
  parsed: Extract<ParsedHandle, { kind: "http-archive" }>,
  settings: ResolvedSettings,
  options: ResolveOptions,
  emit: EventListener,
): Promise<string> {
  const { handle } = parsed;
  return ensureCachedModel(cacheContext(handle, settings, options, emit), (tmpDir, touch, lease) =>
    withHttpClient(settings, options, handle, emit, async (_fetch, transport) => {
      // One retry budget for the whole download: first tries, resumes and restarts share it.
      const budget = new RetryBudget({
        ...DEFAULT_RETRY_POLICY,
        retries: settings.retries,
        baseDelayMs: settings.retryDelayMs,
      });
      void loadTar().catch(() => undefined); // import tar while the request is in flight
      for (;;) {
        emit({ type: "download-start", handle, url: redactUrl(parsed.downloadUrl) });
        const download = await openDownload(parsed.downloadUrl, {
          handle,
          transport,
          idleTimeoutMs: settings.network.idleTimeoutMs,
          budget,
          emit,
          signal: options.signal,
          // Under a lock: stop before any request once it is lost; keep it fresh between attempts.
          hooks: lease && { beforeAttempt: () => lease.ensureHeld(), whileWaiting: () => lease.waiting() },
        });
        try {
          const result = await extractWithProgress(download.stream, tmpDir, {
            handle,
            emit,
            touch,
            totalBytes: download.contentLength,
            contentType: download.contentType,
            maxExtractBytes: settings.maxExtractBytes,
            minFreeBytes: settings.minFreeBytes,
            signal: options.signal,
          });
          return { archiveBytes: result.compressedBytes };
        } catch (error) {
          if (!(error instanceof RestartRequired)) throw error;
          // The host cannot resume: wipe what this attempt extracted and start from byte 0.
          await emptyDir(tmpDir);
        }
      }
    }),
  );
}

/**
 * Run `work` with an HTTP stack: the caller's fetch if given; else hubcache's undici client
 * (proxies, connect timeout, TLS flag) for small requests, and for archive bodies the node:http
 * fast path unless a proxy is configured. The client is closed afterwards.
 */
async function withHttpClient<T>(
  settings: ResolvedSettings,
  options: ResolveOptions,
  handle: string,
  emit: EventListener,
  work: (fetch: FetchFunction, transport: Transport) => Promise<T>,
): Promise<T> {
  if (options.fetch) {
    const stack = httpStack(settings.network, options.fetch);
    return work(stack.fetch, stack.transport);
  }
  if (settings.network.insecureTls) {
    emit({
      type: "warning",
      handle,
      message:
        "TFHUB_DISABLE_CERT_VALIDATION=true: TLS certificates are not checked, so anyone on the network path can substitute the model.",
    });
  }
  const stack = httpStack(settings.network);
  try {
    return await work(stack.fetch, stack.transport);
  } finally {
    await stack.close();
  }
}

/** Remove everything inside `dir`, keeping `dir` itself. */
async function emptyDir(dir: string): Promise<void> {
  for (const name of await fs.readdir(dir)) {
    await fs.rm(path.join(dir, name), { recursive: true, force: true, maxRetries: 3 });
  }
}
