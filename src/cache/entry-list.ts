/**
 * The entries of a store as cache management sees them (listing, pruning, verifying): one shape
 * for a local folder and a bucket, and the orders they are ranked in.
 */
import type { EntryStore, ListedEntry } from "./entry-store.js";

export interface CacheEntry {
  /** The handle, redacted (from the record or descriptor); null when neither names it. */
  handle: string | null;
  hash: string;
  /** Where the entry is: a local path, or s3://bucket/prefix/<hash>. */
  path: string;
  /** Sum of its files' sizes; null when unknown (an incomplete entry). */
  bytes: number | null;
  files: number | null;
  /** ISO 8601. */
  createdAt: string | null;
  lastUsedAt: string | null;
  writer: "hubcache" | "tensorflow_hub" | null;
  state: "ok" | "incomplete" | "downloading";
  /** SHA-256 of the archive as received (records written since issue 11). */
  archiveSha256: string | null;
}

export type EntrySort = "used" | "size" | "name";

/** Every listed entry of `store`, as cache management reports it. */
export async function collectEntries(store: EntryStore): Promise<CacheEntry[]> {
  const entries: CacheEntry[] = [];
  for await (const listed of store.list()) entries.push(toCacheEntry(store, listed));
  return entries;
}

export function toCacheEntry(store: EntryStore, listed: ListedEntry): CacheEntry {
  const iso = (ms: number | undefined): string | null =>
    ms === undefined || !Number.isFinite(ms) ? null : new Date(ms).toISOString();
  return {
    handle: listed.handle ?? null,
    hash: listed.hash,
    path: store.locationOf(listed.hash),
    bytes: listed.bytes ?? null,
    files: listed.files ?? null,
    createdAt: iso(listed.createdMs),
    lastUsedAt: iso(listed.lastUsedMs),
    writer: listed.writer === undefined ? null : listed.writer === "hubcache" ? "hubcache" : "tensorflow_hub",
    state: listed.state,
    archiveSha256: listed.archiveSha256 ?? null,
  };
}

export function totalBytes(entries: readonly CacheEntry[]): number {
  return entries.reduce((sum, entry) => sum + (entry.bytes ?? 0), 0);
}

/** When an entry was last used, ms (its creation when never used; 0 when unknown). */
export function lastUsedMs(entry: CacheEntry): number {
  return Date.parse(entry.lastUsedAt ?? entry.createdAt ?? "") || 0;
}

export function sortEntries(entries: CacheEntry[], sort: EntrySort = "name"): CacheEntry[] {
  const byName = (a: CacheEntry, b: CacheEntry): number =>
    (a.handle ?? "~").localeCompare(b.handle ?? "~") || a.hash.localeCompare(b.hash);
  const order: Record<EntrySort, (a: CacheEntry, b: CacheEntry) => number> = {
    name: byName,
    size: (a, b) => (b.bytes ?? 0) - (a.bytes ?? 0) || byName(a, b),
    used: (a, b) => lastUsedMs(a) - lastUsedMs(b) || byName(a, b),
  };
  return [...entries].sort(order[sort]);
}
