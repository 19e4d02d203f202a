/**
 * `removeEntries`: remove entries by handle or hash (`hubcache rm`). Each goes under its own lock,
 * taken without waiting: an entry whose download lock a live process holds is refused
 * (ERR_HUBCACHE_IN_USE, naming the holder) unless `force`. The store moves it out of its name in
 * one step first (disk: a rename to `<hash>.<uid>.trash`), so a reader sees it whole or missing,
 * and a crash leaves debris the next prune clears.
 */
import type { EntryContext, EntryStore } from "../cache/entry-store.js";
import { handleHash } from "../cache/layout.js";
import { ErrorCode, HubcacheError } from "../errors.js";
import { redactUrl } from "../redact.js";
import { type CacheEntry, collectEntries } from "../cache/entry-list.js";
import { type ManageOptions, openManagedStore } from "./open-store.js";

export interface RemoveOptions extends ManageOptions {
  /** List what would go; remove nothing. */
  dryRun?: boolean | undefined;
  /** Remove even an entry whose download lock a live process holds. */
  force?: boolean | undefined;
}

export interface RemovedEntry {
  /** The handle or hash as given (redacted). */
  target: string;
  /** The entry it matched; null when nothing in the cache matched. */
  entry: CacheEntry | null;
  status: "removed" | "would-remove" | "not-found" | "in-use";
  /** Why it was not removed (not-found, in-use). */
  error: HubcacheError | null;
}

export interface RemoveResult {
  cacheDir: string;
  dryRun: boolean;
  results: RemovedEntry[];
  freedBytes: number;
}

export async function removeEntries(
  targets: readonly string[],
  options: RemoveOptions = {},
): Promise<RemoveResult> {
  const { store, settings, context } = await openManagedStore(options);
  const entries = await collectEntries(store);
  const results: RemovedEntry[] = [];
  for (const target of targets) {
    const entry = findEntry(entries, target);
    if (!entry) {
      results.push({
        target: redactUrl(target),
        entry: null,
        status: "not-found",
        error: notCached(target, settings.cacheDir),
      });
      continue;
    }
    results.push(await removeOne(store, entry, target, options, context));
  }
  const freedBytes = results.reduce(
    (sum, r) => sum + (r.status === "removed" || r.status === "would-remove" ? (r.entry?.bytes ?? 0) : 0),
    0,
  );
  return { cacheDir: settings.cacheDir, dryRun: options.dryRun === true, results, freedBytes };
}

/** A 40-hex hash, the exact handle (its sha1), or the handle as the entry's record or descriptor names it. */
export function findEntry(entries: readonly CacheEntry[], target: string): CacheEntry | undefined {
  const wanted = target.trim();
  const hash = /^[0-9a-f]{40}$/i.test(wanted) ? wanted.toLowerCase() : handleHash(wanted);
  return (
    entries.find((entry) => entry.hash === hash) ??
    entries.find((entry) => entry.handle !== null && entry.handle === redactUrl(wanted))
  );
}

async function removeOne(
  store: EntryStore,
  entry: CacheEntry,
  target: string,
  options: RemoveOptions,
  context: EntryContext,
): Promise<RemovedEntry> {
  const base = { target: redactUrl(target), entry };
  if (options.dryRun) {
    const holder = options.force ? undefined : await store.lockHolder(entry.hash);
    return holder === undefined
      ? { ...base, status: "would-remove", error: null }
      : { ...base, status: "in-use", error: inUse(entry, holder) };
  }
  const lock = await store.tryLock(entry.hash, context);
  if (!lock && !options.force) {
    const holder = (await store.lockHolder(entry.hash)) ?? "another process";
    return { ...base, status: "in-use", error: inUse(entry, holder) };
  }
  try {
    await store.remove(entry.hash);
  } finally {
    await lock?.release();
  }
  return { ...base, status: "removed", error: null };
}

function notCached(target: string, cacheDir: string): HubcacheError {
  return new HubcacheError(ErrorCode.NOT_FOUND, `${target} is not in the cache (${cacheDir}).`, {
    handle: target,
    hint: 'Run "hubcache ls" to see the cached handles and hashes; check --cache-dir / TFHUB_CACHE_DIR.',
  });
}

export function inUse(entry: CacheEntry, holder: string): HubcacheError {
  const name = entry.handle ?? entry.hash;
  return new HubcacheError(
    ErrorCode.IN_USE,
    `${name} is being downloaded or used: its lock is held by ${holder}; it was not removed.`,
    {
      handle: name,
      hint: "Wait for that process to finish, or pass --force (the force option) to remove it anyway.",
    },
  );
}
