/**
 * Where a downloaded model is cached, by configuration:
 * - a local cache dir (the default): src/cache/local-cache.ts, resolve returns the local path;
 * - a cache dir on object storage (TFHUB_CACHE_DIR=s3://… or gs://…): object-cache.ts, resolve
 *   returns the remote location, as TF Hub does;
 * - two tiers (a local cache dir plus HUBCACHE_SHARED_CACHE=s3://… or gs://…): a local miss looks
 *   in the shared cache first and only then asks the hub; what the hub sent is published to both;
 *   resolve returns the local path.
 */
import { pythonTempDir } from "../config.js";
import { PROGRESS_INTERVAL_MS } from "../extract/with-progress.js";
import { ErrorCode, HubcacheError } from "../errors.js";
import type { EventListener } from "../events.js";
import { openStorage, type StorageOptions } from "../storage/open.js";
import { isRemoteLocation } from "../storage/location.js";
import type { Storage } from "../storage/types.js";
import { entryPaths } from "./layout.js";
import { type DownloadLease, type DownloadReport, type Downloader, ensureEntry } from "./local-cache.js";
import { downloadObjectEntry, ensureObjectEntry } from "./object-cache.js";

export interface CacheContext {
  handle: string;
  cacheDir: string;
  sharedCache: string | undefined;
  offline: boolean;
  lockTimeoutMs: number;
  emit: EventListener;
  signal?: AbortSignal | undefined;
  storage: StorageOptions;
}

async function openCacheStorage(location: string, what: string, options: StorageOptions): Promise<Storage> {
  const storage = await openStorage(location, options);
  if (storage.readOnly) {
    throw new HubcacheError(
      ErrorCode.INVALID_CONFIG,
      `${what} ${location} is read-only; a cache must be writable.`,
      {
        hint: "Use a local directory, s3://BUCKET/prefix or gs://BUCKET/prefix.",
      },
    );
  }
  return storage;
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

/**
 * Make sure the model `produce` makes is cached, and return where it is. `produce` fills a
 * directory from the model's source (the hub, an archive in a bucket).
 */
export async function ensureCachedModel(context: CacheContext, produce: Downloader): Promise<string> {
  const { handle, emit } = context;
  checkCacheSettings(context.cacheDir, context.sharedCache);
  const common = {
    handle,
    lockTimeoutMs: context.lockTimeoutMs,
    emit,
    signal: context.signal,
  };

  if (isRemoteLocation(context.cacheDir)) {
    const storage = await openCacheStorage(context.cacheDir, "The cache dir", context.storage);
    const { entry } = await ensureObjectEntry(storage, handle, produce, {
      ...common,
      offline: context.offline,
      // The model is staged on local disk before upload: in the temp dir of the caller's env.
      tempRoot: pythonTempDir(context.storage.env ?? process.env),
    });
    return entry.location;
  }

  const paths = entryPaths(context.cacheDir, handle);
  const sharedCache = context.sharedCache;
  if (sharedCache === undefined) return ensureEntry(paths, produce, { ...common, offline: context.offline });

  // Two tiers. The shared cache is opened only on a local miss, so a warm resolve stays local.
  return ensureEntry(
    paths,
    async (tmpDir, touch, lease): Promise<DownloadReport> => {
      // Waiting on the shared tier (another machine downloading) is progress too: keep the local lock fresh.
      const heartbeat = setInterval(touch, 1000);
      heartbeat.unref();
      try {
        return await fromSharedTier(tmpDir, touch, lease);
      } finally {
        clearInterval(heartbeat);
      }
    },
    // Offline is enforced inside: a shared-cache hit is still a cache hit.
    { ...common, offline: false },
  );

  async function fromSharedTier(
    tmpDir: string,
    touch: () => void,
    lease: DownloadLease | undefined,
  ): Promise<DownloadReport> {
    const shared = await openCacheStorage(sharedCache as string, "The shared cache", context.storage);
    let report: DownloadReport | undefined;
    const { entry, produced } = await ensureObjectEntry(
      shared,
      handle,
      async (dir, innerTouch) => {
        report = await produce(
          dir,
          () => {
            touch();
            innerTouch();
          },
          lease,
        );
        return report;
      },
      { ...common, offline: context.offline, stagingDir: tmpDir, bestEffortPublish: true },
    );
    if (produced) return report ?? { archiveBytes: 0 };

    emit({ type: "download-start", handle, url: entry.location });
    const totalBytes = entry.files.reduce((sum, file) => sum + file.size, 0);
    let lastEmit = 0;
    const progress = (bytes: number, done: boolean): void =>
      emit({
        type: "progress",
        handle,
        downloadedBytes: bytes,
        totalBytes,
        extractedBytes: bytes,
        files: 0,
        done,
      });
    const bytes = await downloadObjectEntry(shared, entry, tmpDir, {
      handle,
      emit,
      signal: context.signal,
      onBytes: (total) => {
        const now = Date.now();
        if (now - lastEmit >= PROGRESS_INTERVAL_MS) {
          lastEmit = now;
          touch();
          progress(total, false);
        }
      },
    });
    progress(bytes, true);
    return { archiveBytes: bytes };
  }
}
