/** `pruneCache` (`hubcache prune`): the cache's store pruned by the algorithm of cache/prune.ts. */
import { existsSync } from "node:fs";
import { type PruneResult, emptyResult, pruneStore } from "../cache/prune.js";
import { isRemoteLocation } from "../storage/location.js";
import { type ManageOptions, openManagedStore } from "./open-store.js";

export type { PruneReason, PrunedEntry, PruneResult } from "../cache/prune.js";

export interface PruneOptions extends ManageOptions {
  /** Remove least recently used entries until the cache holds at most this many bytes. */
  maxBytes?: number | undefined;
  /** Remove entries not used for this long (ms). */
  unusedForMs?: number | undefined;
  /** List what would go and how much it frees; remove nothing. */
  dryRun?: boolean | undefined;
}

export async function pruneCache(options: PruneOptions = {}): Promise<PruneResult> {
  const { store, settings, context } = await openManagedStore(options);
  const { cacheDir } = settings;
  if (!isRemoteLocation(cacheDir) && !existsSync(cacheDir)) {
    // Nothing was ever cached here: nothing to prune (and no lock to take in a missing dir).
    return emptyResult(cacheDir, options.dryRun === true);
  }
  return pruneStore(store, context, { ...options, cacheDir });
}
