/** `resolve(handle)`: a model handle becomes a location (a local directory in compressed mode). */
import { promises as fs } from "node:fs";
import { entryPaths } from "./cache/layout.js";
import { ensureEntry } from "./cache/local-cache.js";
import {
  type Env,
  type TfhubFlags,
  chooseCacheDir,
  chooseLoadFormat,
  envFlag,
  envNumber,
  readTfhubFlags,
} from "./config.js";
import { ErrorCode, HubcacheError, errnoCode } from "./errors.js";
import { type EventListener, type HubcacheEvent, type ProgressEvent, emitter } from "./events.js";
import { extractArchive } from "./extract/extract.js";
import { type LoadFormat, type ModelFormat, type ParsedHandle, parseHandle } from "./handle.js";
import { type FetchFunction, httpGet } from "./net/http.js";
import { resolveUncompressed } from "./net/uncompressed.js";
import { redactUrl } from "./redact.js";

export interface ResolveOptions {
  /** Cache directory; wins over TFHUB_CACHE_DIR and --tfhub_cache_dir. */
  cacheDir?: string;
  /** COMPRESSED (download and cache), UNCOMPRESSED (return the host's remote location) or AUTO (= COMPRESSED). */
  loadFormat?: LoadFormat;
  /** Force the hosting protocol family; by default TF.js handles are detected from the URL. */
  modelFormat?: ModelFormat;
  /** Resolve from the cache only; a miss fails at once with ERR_HUBCACHE_OFFLINE. Default: HUBCACHE_OFFLINE. */
  offline?: boolean;
  /** How long a lock may show no progress before it is taken over, in ms. Default: HUBCACHE_LOCK_TIMEOUT (s) or 60 s. */
  lockTimeoutMs?: number;
  /** Stop extracting past this many bytes. Default: HUBCACHE_MAX_EXTRACT_BYTES, else no limit. */
  maxExtractBytes?: number;
  /** Every event: cache hits, downloads, lock waits, progress... */
  onEvent?: (event: HubcacheEvent) => void;
  /** Download progress only (throttled to about 10 per second, plus a last one with `done: true`). */
  onProgress?: (event: ProgressEvent) => void;
  /** A fetch implementation to use instead of the global one (proxies, custom headers, tests). */
  fetch?: FetchFunction;
  signal?: AbortSignal;
  /** Environment to read settings from. Default: process.env. */
  env?: Env;
  /** TF Hub flags (`--tfhub_cache_dir`, `--tfhub_model_load_format`). Default: read from process.argv. */
  flags?: TfhubFlags;
}

export const DEFAULT_LOCK_TIMEOUT_MS = 60_000;
const PROGRESS_INTERVAL_MS = 100;

/** Settings after precedence is applied. */
export interface ResolvedSettings {
  cacheDir: string;
  loadFormat: LoadFormat;
  offline: boolean;
  lockTimeoutMs: number;
  maxExtractBytes: number | undefined;
}

export function resolveSettings(options: ResolveOptions = {}): ResolvedSettings {
  const env = options.env ?? process.env;
  const flags = options.flags ?? readTfhubFlags(process.argv.slice(2));
  const lockTimeoutSeconds = envNumber(env, "HUBCACHE_LOCK_TIMEOUT");
  return {
    cacheDir: chooseCacheDir({ cacheDir: options.cacheDir, env, flags }),
    loadFormat: chooseLoadFormat(options.loadFormat, env, flags),
    offline: options.offline ?? envFlag(env, "HUBCACHE_OFFLINE"),
    lockTimeoutMs:
      options.lockTimeoutMs ??
      (lockTimeoutSeconds === undefined ? DEFAULT_LOCK_TIMEOUT_MS : lockTimeoutSeconds * 1000),
    maxExtractBytes: options.maxExtractBytes ?? envNumber(env, "HUBCACHE_MAX_EXTRACT_BYTES"),
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
      return resolveUncompressed(parsed, options);
    case "object-archive":
    case "object-folder":
      throw new HubcacheError(ErrorCode.UNSUPPORTED, `${parsed.scheme}:// handles are not supported yet.`, {
        handle: parsed.handle,
        hint: "Download the model with your cloud CLI and pass the local path.",
      });
    case "http-archive":
      return resolveHttpArchive(parsed, settings, options, emit);
  }
}

async function resolveLocalPath(handle: string, localPath: string): Promise<string> {
  try {
    await fs.stat(localPath);
    return localPath;
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

function requireLocalCacheDir(cacheDir: string, handle: string): void {
  if (cacheDir.includes("://")) {
    throw new HubcacheError(
      ErrorCode.UNSUPPORTED,
      `A cache directory on object storage (${cacheDir}) is not supported yet.`,
      {
        handle,
        hint: "Set TFHUB_CACHE_DIR to a local directory.",
      },
    );
  }
}

async function resolveHttpArchive(
  parsed: Extract<ParsedHandle, { kind: "http-archive" }>,
  settings: ResolvedSettings,
  options: ResolveOptions,
  emit: EventListener,
): Promise<string> {
  const { handle } = parsed;
  requireLocalCacheDir(settings.cacheDir, handle);
  const paths = entryPaths(settings.cacheDir, handle);
  return ensureEntry(
    paths,
    async (tmpDir, touch) => {
      emit({ type: "download-start", handle, url: redactUrl(parsed.downloadUrl) });
      const response = await httpGet(parsed.downloadUrl, {
        handle,
        fetch: options.fetch,
        signal: options.signal,
      });
      let lastEmit = 0;
      let downloaded = 0;
      let extracted = 0;
      let files = 0;
      const progress = (done: boolean): void => {
        emit({
          type: "progress",
          handle,
          downloadedBytes: downloaded,
          totalBytes: response.contentLength,
          extractedBytes: extracted,
          files,
          done,
        });
      };
      const result = await extractArchive(response.body, tmpDir, {
        handle,
        contentType: response.contentType,
        maxExtractBytes: settings.maxExtractBytes,
        signal: options.signal,
        onBytes: (compressed, uncompressed, entries) => {
          downloaded = compressed;
          extracted = uncompressed;
          files = entries;
          const now = Date.now();
          if (now - lastEmit >= PROGRESS_INTERVAL_MS) {
            lastEmit = now;
            touch();
            progress(false);
          }
        },
      });
      progress(true);
      return { archiveBytes: result.compressedBytes };
    },
    {
      handle,
      offline: settings.offline,
      lockTimeoutMs: settings.lockTimeoutMs,
      emit,
      signal: options.signal,
    },
  );
}
