/**
 * `resolve(handle)`: a model handle becomes a location (a local directory in compressed mode).
 * Parse the handle, resolve the settings (settings.ts), then by the handle's kind: use a local path
 * in place, check a remote folder, or have the cache (cache/open-cache.ts) make sure the model a
 * source (sources/) produces is cached.
 */
import { type CacheContext, ensureCachedModel } from "./cache/open-cache.js";
import { ErrorCode, HubcacheError } from "./errors.js";
import { type EventListener, emitter } from "./events.js";
import { type ParsedHandle, parseHandle } from "./handle.js";
import { DEFAULT_RETRY_POLICY } from "./net/retry.js";
import { resolveUncompressed } from "./net/uncompressed.js";
import { type ResolveOptions, type ResolvedSettings, resolveSettings } from "./settings.js";
import { httpArchiveProducer } from "./sources/http-archive.js";
import { withHttpClient } from "./sources/http-client.js";
import { statLocalPath } from "./sources/local-path.js";
import { objectArchiveProducer } from "./sources/object-archive.js";
import { objectNotFound } from "./storage/errors.js";
import { type StorageOptions, openStorage } from "./storage/open.js";
import { folderExists } from "./storage/transfer.js";
import { ROUTE, type RoutedOptions } from "./sources/http-client.js";
import { type RequestRoute, mirrorRoute, mirrorSettings, routeParsed } from "./net/route.js";

export {
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_IDLE_TIMEOUT_MS,
  DEFAULT_LOCK_TIMEOUT_MS,
  type ResolveOptions,
  type ResolvedSettings,
  resolveSettings,
} from "./settings.js";

/**
 * Turn a model handle into a location: a local directory for http(s) and archive handles
 * (downloaded once into the TF Hub cache), the path itself for local paths, or the remote
 * location in UNCOMPRESSED mode.
 */
export async function resolve(handle: string, options: ResolveOptions = {}): Promise<string> {
  const mirror = mirrorSettings(options);
  return resolveRouted(handle, options, mirror && mirrorRoute(mirror));
}

/**
 * Internal (not exported by the package): resolve, with http(s) requests sent where `route` says
 * (a mirror, or `hubcache serve --upstream`); the cache key stays `handle`.
 */
export async function resolveRouted(
  handle: string,
  options: ResolveOptions,
  route: RequestRoute | undefined,
): Promise<string> {
  const settings = resolveSettings(options);
  const parsed = parseHandle(handle, {
    loadFormat: settings.loadFormat,
    modelFormat: options.modelFormat ?? "auto",
  });
  const emit = emitter(options.onEvent, options.onProgress);
  if (!route) return resolveParsed(parsed, settings, options, emit);
  const routed: RoutedOptions = { ...options, [ROUTE]: route };
  return resolveParsed(routeParsed(parsed, route), settings, routed, emit).catch((error: unknown) => {
    throw route.explain(error);
  });
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
        return checkRemoteFolder(parsed.handle, location, settings, { ...options, fetch });
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
      return checkRemoteFolder(parsed.handle, parsed.handle, settings, options);
    case "http-archive":
      return resolveHttpArchive(parsed, settings, options, emit);
  }
}

async function resolveLocalPath(handle: string, localPath: string): Promise<string> {
  await statLocalPath(handle, localPath);
  return localPath;
}

/** What storage reads with: the caller's SDK settings, and the same network settings as downloads. */
function storageOptions(options: ResolveOptions, settings: ResolvedSettings): StorageOptions {
  return {
    ...options.storage,
    env: options.env,
    fetch: options.fetch,
    signal: options.signal,
    network: settings.network,
    retry: { ...DEFAULT_RETRY_POLICY, retries: settings.retries, baseDelayMs: settings.retryDelayMs },
  };
}

/**
 * A model folder used in place (gs://, s3:// folders, and UNCOMPRESSED locations): it must exist,
 * as TF Hub's PathResolver checks; then the location is returned as it is.
 */
async function checkRemoteFolder(
  handle: string,
  location: string,
  settings: ResolvedSettings,
  options: ResolveOptions,
): Promise<string> {
  const storage = await openStorage(location, storageOptions(options, settings));
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
    cacheDirSource: settings.cacheDirSource,
    sharedCache: settings.sharedCache,
    offline: settings.offline,
    lockTimeoutMs: settings.lockTimeoutMs,
    emit,
    signal: options.signal,
    storage: storageOptions(options, settings),
    maxCacheBytes: settings.maxCacheBytes,
    touchIntervalMs: settings.touchIntervalMs,
  };
}

/** gs:// and s3:// archives: streamed from the bucket into the cache, like http archives. */
async function resolveObjectArchive(
  parsed: Extract<ParsedHandle, { kind: "object-archive" }>,
  settings: ResolvedSettings,
  options: ResolveOptions,
  emit: EventListener,
): Promise<string> {
  const produce = objectArchiveProducer(parsed, {
    emit,
    maxExtractBytes: settings.maxExtractBytes,
    maxFiles: settings.maxFiles,
    minFreeBytes: settings.minFreeBytes,
    signal: options.signal,
    storage: storageOptions(options, settings),
  });
  return ensureCachedModel(cacheContext(parsed.handle, settings, options, emit), produce);
}

/** http(s) archives: downloaded (retries, resume, restarts) and extracted into the cache. */
async function resolveHttpArchive(
  parsed: Extract<ParsedHandle, { kind: "http-archive" }>,
  settings: ResolvedSettings,
  options: ResolveOptions,
  emit: EventListener,
): Promise<string> {
  const produce = httpArchiveProducer(parsed, settings, options, emit);
  return ensureCachedModel(cacheContext(parsed.handle, settings, options, emit), produce);
}
