/**
 * The entry store cache management works on: the cache a resolve with the same settings would use
 * (resolveSettings: option > environment > TF Hub flag > default), a local dir or s3:// / gs://.
 * With two tiers (HUBCACHE_SHARED_CACHE), the local cache is the one managed.
 */
import { pythonTempDir } from "../config.js";
import { DiskEntryStore } from "../cache/disk-store.js";
import type { EntryContext, EntryStore } from "../cache/entry-store.js";
import { ObjectEntryStore } from "../cache/object-store.js";
import { ErrorCode, HubcacheError } from "../errors.js";
import { type HubcacheEvent, emitter } from "../events.js";
import { type ResolveOptions, type ResolvedSettings, resolveSettings } from "../settings.js";
import { isRemoteLocation } from "../storage/location.js";
import { openStorage } from "../storage/open.js";

/** The cache settings every management call takes, as `resolve` does. */
export type ManageOptions = Pick<
  ResolveOptions,
  "cacheDir" | "sharedCache" | "storage" | "env" | "flags" | "lockTimeoutMs" | "signal"
> & {
  /** Events: orphan-removed, warnings. */
  onEvent?: ((event: HubcacheEvent) => void) | undefined;
};

export interface ManagedStore {
  store: EntryStore;
  settings: ResolvedSettings;
  context: EntryContext;
}

export async function openManagedStore(options: ManageOptions): Promise<ManagedStore> {
  const settings = resolveSettings(options);
  const context: EntryContext = {
    handle: settings.cacheDir,
    emit: emitter(options.onEvent, undefined),
    signal: options.signal,
  };
  return { store: await storeFor(settings, options), settings, context };
}

async function storeFor(settings: ResolvedSettings, options: ManageOptions): Promise<EntryStore> {
  const { cacheDir, lockTimeoutMs } = settings;
  if (!isRemoteLocation(cacheDir)) return new DiskEntryStore(cacheDir, { lockTimeoutMs });
  const env = options.env ?? process.env;
  const storage = await openStorage(cacheDir, { ...options.storage, env, signal: options.signal });
  if (storage.readOnly) {
    throw new HubcacheError(
      ErrorCode.INVALID_CONFIG,
      `The cache dir ${cacheDir} is not a cache (read-only storage).`,
      {
        hint: "Use a local directory, s3://BUCKET/prefix or gs://BUCKET/prefix.",
      },
    );
  }
  return new ObjectEntryStore(storage, { lockTimeoutMs, tempRoot: pythonTempDir(env) });
}
