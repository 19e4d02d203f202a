/** `listEntries`: every entry of the cache, with its size, times, writer and state (`hubcache ls`). */
import {
  type CacheEntry,
  type EntrySort,
  collectEntries,
  sortEntries,
  totalBytes,
} from "../cache/entry-list.js";
import { type ManageOptions, openManagedStore } from "./open-store.js";

export interface CacheListing {
  cacheDir: string;
  /** Sum of the known sizes. */
  totalBytes: number;
  entries: CacheEntry[];
}

export interface ListOptions extends ManageOptions {
  /** `used`: least recently used first (the order prune evicts in); `size`: largest first; `name`: by handle. Default `name`. */
  sort?: EntrySort | undefined;
}

export async function listEntries(options: ListOptions = {}): Promise<CacheListing> {
  const { store, settings } = await openManagedStore(options);
  const entries = await collectEntries(store);
  return {
    cacheDir: settings.cacheDir,
    totalBytes: totalBytes(entries),
    entries: sortEntries(entries, options.sort),
  };
}

export type { CacheEntry, EntrySort };
