/**
 * Which entry store(s) a resolve caches into, by configuration, all through the one algorithm of
 * ensure-entry.ts:
 * - a local cache dir (the default): the disk store; resolve returns the local path;
 * - a cache dir on object storage (TFHUB_CACHE_DIR=s3://… or gs://…): the object store; resolve
 *   returns the remote location, as TF Hub does;
 * - two tiers (a local cache dir plus HUBCACHE_SHARED_CACHE=s3://… or gs://…): the disk store,
 *   whose producer is ensureEntry on the shared object store, staged into the local entry's temp
 *   dir (a shared hit is copied down; a shared miss asks the hub and publishes to both); resolve
 *   returns the local path.
 */
import { type CacheDirSource, cacheDirHint, pythonTempDir } from "../config.js";
import { ErrorCode, HubcacheError } from "../errors.js";
import { isRemoteLocation } from "../storage/location.js";
import { type StorageOptions, openStorage } from "../storage/open.js";
import type { Storage } from "../storage/types.js";
import { DiskEntryStore } from "./disk-store.js";
import { pruneAfterDownload } from "./prune.js";
import type { CacheDirHint, EntryContext, EntryStore } from "./entry-store.js";
import {
  type DownloadLease,
  type DownloadReport,
  type EnsureEntryOptions,
  type EnsuredEntry,
  type Producer,
  ensureEntry,
} from "./ensure-entry.js";
import { ObjectEntryStore } from "./object-store.js";
import type { RecordFile } from "./record.js";

export interface CacheContext extends EntryContext {
  cacheDir: string;
  /** Which setting chose `cacheDir` (ResolvedSettings.cacheDirSource), for hints. */
  cacheDirSource?: CacheDirSource | undefined;
  sharedCache: string | undefined;
  offline: boolean;
  lockTimeoutMs: number;
  storage: StorageOptions;
  /** Cache management: the size cap (pruned to after each download) and the last-use interval. */
  maxCacheBytes?: number | undefined;
  touchIntervalMs?: number | undefined;
}

/** At most this often a `progress` event (and a heartbeat) while a shared entry is copied down. */
const COPY_PROGRESS_MS = 100;

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

function entryOptions(context: CacheContext, capped?: EntryStore): EnsureEntryOptions {
  const { maxCacheBytes } = context;
  return {
    handle: context.handle,
    offline: context.offline,
    lockTimeoutMs: context.lockTimeoutMs,
    emit: context.emit,
    signal: context.signal,
    cacheDirHint: hintOf(context),
    touchIntervalMs: context.touchIntervalMs,
    afterPublish:
      capped && maxCacheBytes !== undefined
        ? (hash) => pruneAfterDownload(capped, context, { maxBytes: maxCacheBytes, justDownloaded: hash })
        : undefined,
  };
}

function hintOf(context: CacheContext): CacheDirHint | undefined {
  const source = context.cacheDirSource;
  return source === undefined ? undefined : (target) => cacheDirHint(source, target);
}

const sharedCacheHint: CacheDirHint = (target) =>
  `The shared cache was chosen by HUBCACHE_SHARED_CACHE (--shared-cache / the sharedCache option): point it at ${target}.`;

/**
 * Make sure the model `produce` makes is cached, and return where it is. `produce` fills a
 * directory from the model's source (src/sources/: the hub, an archive in a bucket).
 */
export async function ensureCachedModel(context: CacheContext, produce: Producer): Promise<string> {
  if (isRemoteLocation(context.cacheDir)) {
    const storage = await openCacheStorage(context.cacheDir, "The cache dir", context.storage);
    const store = new ObjectEntryStore(storage, {
      lockTimeoutMs: context.lockTimeoutMs,
      // The model is staged on local disk before upload: in the temp dir of the caller's env.
      tempRoot: pythonTempDir(context.storage.env ?? process.env),
    });
    return (await ensureEntry(store, context.handle, produce, entryOptions(context, store))).location;
  }
  const local = new DiskEntryStore(context.cacheDir, {
    lockTimeoutMs: context.lockTimeoutMs,
    cacheDirHint: hintOf(context),
  });
  if (context.sharedCache === undefined) {
    return (await ensureEntry(local, context.handle, produce, entryOptions(context, local))).location;
  }
  // Two tiers. The shared cache is opened only on a local miss, so a warm resolve stays local.
  // Offline is enforced by the shared tier: a shared-cache hit is still a cache hit.
  const sharedCache = context.sharedCache;
  const fromShared: Producer = (tmpDir, touch, lease) =>
    produceFromSharedTier(context, sharedCache, { tmpDir, touch, lease }, produce);
  const localOptions = { ...entryOptions(context, local), offline: false };
  return (await ensureEntry(local, context.handle, fromShared, localOptions)).location;
}

/** The local entry being produced: its temp dir, and its lock's progress mark and lease. */
interface LocalStaging {
  tmpDir: string;
  touch: () => void;
  lease: DownloadLease;
}

/**
 * The local tier's producer: the entry from the shared tier, copied into the local temp dir; on a
 * shared miss the hub's model, produced right into the local temp dir and published to the shared
 * tier too. A shared tier this machine may not write to still serves hits (a warning, then the hub).
 */
async function produceFromSharedTier(
  context: CacheContext,
  sharedCache: string,
  local: LocalStaging,
  produce: Producer,
): Promise<DownloadReport> {
  const storage = await openCacheStorage(sharedCache, "The shared cache", context.storage);
  const shared = new ObjectEntryStore(storage, {
    lockTimeoutMs: context.lockTimeoutMs,
    stagingDir: local.tmpDir,
  });
  // Where a failure came from: the store (best effort when it is a permission error) or the hub.
  const progress: { phase: "store" | "producing" | "produced" } = { phase: "store" };
  let report: DownloadReport | undefined;
  const fromHub: Producer = async (dir, sharedTouch, sharedLease) => {
    progress.phase = "producing";
    const touch = (): void => {
      local.touch();
      sharedTouch();
    };
    report = await produce(dir, touch, bothLeases(local.lease, sharedLease));
    progress.phase = "produced";
    return report;
  };
  let entry: EnsuredEntry;
  try {
    entry = await ensureEntry(shared, context.handle, fromHub, {
      ...entryOptions(context),
      cacheDirHint: sharedCacheHint,
      shareInProcess: false, // the local tier already shares one download per entry
      whileWaiting: () => local.lease.waiting(), // waiting on another machine is deliberate
    });
  } catch (error) {
    if (progress.phase === "producing" || !isPermissionError(error)) throw error;
    const verb = progress.phase === "produced" ? "publish" : "write";
    const message = `Cannot ${verb} to the shared cache ${storage.location}: ${(error as Error).message}`;
    context.emit({ type: "warning", handle: context.handle, message });
    return report ?? produce(local.tmpDir, local.touch, local.lease);
  }
  if (entry.produced) return report ?? { archiveBytes: 0 };
  return copySharedEntry(context, shared, entry, local);
}

/** A lease on both locks: held while both are; waiting refreshes both. */
function bothLeases(outer: DownloadLease, inner: DownloadLease): DownloadLease {
  return {
    async ensureHeld() {
      await outer.ensureHeld();
      await inner.ensureHeld();
    },
    waiting() {
      outer.waiting();
      inner.waiting();
    },
  };
}

function isPermissionError(error: unknown): boolean {
  return (
    error instanceof HubcacheError &&
    (error.code === ErrorCode.FORBIDDEN ||
      error.code === ErrorCode.UNAUTHORIZED ||
      error.code === ErrorCode.NOT_WRITABLE ||
      error.code === ErrorCode.UNSUPPORTED)
  );
}

/** Copy a shared hit into the local temp dir, with download events as if from a host. */
async function copySharedEntry(
  context: CacheContext,
  shared: ObjectEntryStore,
  entry: EnsuredEntry,
  local: LocalStaging,
): Promise<DownloadReport> {
  const { handle, emit } = context;
  const files = entry.files ?? [];
  emit({ type: "download-start", handle, url: entry.location });
  const totalBytes = files.reduce((sum, file) => sum + file.size, 0);
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
  let lastEmit = 0;
  const bytes = await shared.copyInto(entry.hash, files, local.tmpDir, {
    signal: context.signal,
    onBytes: (total) => {
      const now = Date.now();
      if (now - lastEmit < COPY_PROGRESS_MS) return;
      lastEmit = now;
      local.touch();
      progress(total, false);
    },
  });
  progress(bytes, true);
  // The shared record's digests carry over to the local record.
  const crc32ByPath = new Map<string, number>();
  for (const file of files as RecordFile[]) {
    if (file.crc32 !== undefined) crc32ByPath.set(file.path, Number.parseInt(file.crc32, 16));
  }
  return { archiveBytes: bytes, crc32ByPath };
}
