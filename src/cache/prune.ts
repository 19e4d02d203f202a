/**
 * Pruning a store (the algorithm behind `hubcache prune` and the size cap, HUBCACHE_MAX_SIZE):
 * 1. under the cache-wide prune lock `hubcache-prune.lock`, taken without waiting (whoever cannot
 *    take it skips: a prune never blocks, and never blocks a download);
 * 2. the debris of removals and dead downloads goes (EntryStore.sweepDebris);
 * 3. incomplete entries go, then entries unused for `unusedForMs`, then least recently used
 *    entries until the cache holds at most `maxBytes`.
 * Every entry is removed under its own lock, taken without waiting: an entry being downloaded, or
 * whose lock a live process holds, is skipped. `protect` (the entry just downloaded) is never removed.
 */
import { mapLimit } from "../storage/transfer.js";
import { newUid } from "../uid.js";
import { type CacheEntry, lastUsedMs, sortEntries, totalBytes, collectEntries } from "./entry-list.js";
import type { EntryContext, EntryStore } from "./entry-store.js";
import type { HeldLock } from "./lock-wait.js";

/** The cache-wide lock: `<cacheDir>/hubcache-prune.lock`. */
export const PRUNE_LOCK = "hubcache-prune";
/** Written by a download whose prune was skipped: the prune running then goes round once more. */
const PRUNE_PENDING = "hubcache-prune.pending";

export type PruneReason = "incomplete" | "unused" | "over-size";

export interface PrunedEntry {
  entry: CacheEntry;
  reason: PruneReason;
}

export interface PruneResult {
  cacheDir: string;
  dryRun: boolean;
  /** False when another prune held the prune lock: nothing was done. */
  ran: boolean;
  /** That prune's lock holder ("host.pid.uid"). */
  busyWith: string | null;
  removed: PrunedEntry[];
  /** Entries that would have gone but whose lock is held (being downloaded or used). */
  skipped: PrunedEntry[];
  /** Debris removed (temp dirs and files of dead downloads and removals). */
  debris: string[];
  freedBytes: number;
  totalBytesBefore: number;
  totalBytesAfter: number;
}

export function emptyResult(cacheDir: string, dryRun: boolean): PruneResult {
  return {
    cacheDir,
    dryRun,
    ran: true,
    busyWith: null,
    removed: [],
    skipped: [],
    debris: [],
    freedBytes: 0,
    totalBytesBefore: 0,
    totalBytesAfter: 0,
  };
}

interface StorePruneOptions {
  cacheDir: string;
  maxBytes?: number | undefined;
  unusedForMs?: number | undefined;
  dryRun?: boolean | undefined;
  /** Hashes never removed. */
  protect?: readonly string[] | undefined;
}

export async function pruneStore(
  store: EntryStore,
  context: EntryContext,
  options: StorePruneOptions,
): Promise<PruneResult> {
  const dryRun = options.dryRun === true;
  const result = emptyResult(options.cacheDir, dryRun);
  const lock = dryRun ? undefined : await store.tryLock(PRUNE_LOCK, context);
  if (!dryRun && !lock) {
    return { ...result, ran: false, busyWith: (await store.lockHolder(PRUNE_LOCK)) ?? null };
  }
  try {
    if (lock) result.debris = await store.sweepDebris(context);
    const entries = await collectEntries(store);
    result.totalBytesBefore = totalBytes(entries);
    await removePlanned(store, context, entries, options, result, lock);
    result.freedBytes = sum(result.removed);
    result.totalBytesAfter = result.totalBytesBefore - result.freedBytes;
    return result;
  } finally {
    await lock?.release();
  }
}

/** Removals run this many at a time: each is a dozen file-system calls, mostly waiting. */
const REMOVE_CONCURRENCY = 16;

/** Incomplete, then unused, then least recently used over the cap: each removed (or listed) in turn. */
async function removePlanned(
  store: EntryStore,
  context: EntryContext,
  entries: CacheEntry[],
  options: StorePruneOptions,
  result: PruneResult,
  pruneLock: HeldLock | undefined,
): Promise<void> {
  const protect = new Set(options.protect ?? []);
  const now = Date.now();
  const take = async (entry: CacheEntry, reason: PruneReason): Promise<boolean> => {
    pruneLock?.touch(); // a long prune is progress, not a stalled holder
    const removed = await removeIfFree(store, context, entry, options.dryRun === true);
    (removed ? result.removed : result.skipped).push({ entry, reason });
    return removed;
  };
  const first: [CacheEntry, PruneReason][] = [];
  const kept: CacheEntry[] = [];
  for (const entry of entries) {
    if (protect.has(entry.hash) || entry.state === "downloading") kept.push(entry);
    else if (entry.state === "incomplete") first.push([entry, "incomplete"]);
    else if (options.unusedForMs !== undefined && now - lastUsedMs(entry) > options.unusedForMs) {
      first.push([entry, "unused"]);
    } else kept.push(entry);
  }
  await mapLimit(first, REMOVE_CONCURRENCY, async ([entry, reason]) => {
    if (!(await take(entry, reason)) && reason === "unused") kept.push(entry);
  });
  if (options.maxBytes !== undefined) {
    const candidates = sortEntries(kept, "used").filter((e) => !protect.has(e.hash) && e.state === "ok");
    await removeOverSize(candidates, result.totalBytesBefore - sum(result.removed), options.maxBytes, take);
  }
  // Report in the order of the plan (incomplete, unused, then least recently used first).
  const rank = new Map(sortEntries(entries, "used").map((e, i) => [e.hash, i]));
  const order = (p: PrunedEntry): number =>
    (p.reason === "over-size" ? 2 : p.reason === "unused" ? 1 : 0) * entries.length +
    (rank.get(p.entry.hash) ?? 0);
  result.removed.sort((a, b) => order(a) - order(b));
  result.skipped.sort((a, b) => order(a) - order(b));
}

/**
 * Least recently used first, REMOVE_CONCURRENCY at a time. A removal counts as soon as it starts
 * (and back if it is skipped), so the removals running at once never take more than the cap asks for.
 */
async function removeOverSize(
  candidates: readonly CacheEntry[],
  startBytes: number,
  maxBytes: number,
  take: (entry: CacheEntry, reason: PruneReason) => Promise<boolean>,
): Promise<void> {
  let total = startBytes;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (total > maxBytes && next < candidates.length) {
      const entry = candidates[next++] as CacheEntry;
      total -= entry.bytes ?? 0;
      if (!(await take(entry, "over-size"))) total += entry.bytes ?? 0;
    }
  };
  await Promise.all(Array.from({ length: REMOVE_CONCURRENCY }, worker));
}

function sum(pruned: readonly PrunedEntry[]): number {
  return pruned.reduce((total, p) => total + (p.entry.bytes ?? 0), 0);
}

/** Remove the entry under its lock, taken without waiting; false when someone holds it. */
async function removeIfFree(
  store: EntryStore,
  context: EntryContext,
  entry: CacheEntry,
  dryRun: boolean,
): Promise<boolean> {
  if (dryRun) return (await store.lockHolder(entry.hash)) === undefined;
  const lock = await store.tryLock(entry.hash, context);
  if (!lock) return false;
  try {
    await store.remove(entry.hash);
    return true;
  } finally {
    await lock.release();
  }
}

/**
 * After a download (HUBCACHE_MAX_SIZE): prune to the cap, never removing `justDownloaded`. A
 * process that cannot take the prune lock first leaves a note, so the prune holding it goes round
 * once more and sees this download too: the cache ends at most at the cap plus the entries being
 * published at that moment. Never throws (a warning event says what failed).
 */
export async function pruneAfterDownload(
  store: EntryStore,
  context: EntryContext,
  options: { maxBytes: number; justDownloaded: string },
): Promise<void> {
  try {
    for (let round = 0; round < 5; round++) {
      const mark = newUid();
      await store.writeNote(PRUNE_PENDING, mark);
      const result = await pruneStore(store, context, {
        cacheDir: store.location,
        maxBytes: options.maxBytes,
        protect: [options.justDownloaded],
      });
      // Skipped: the prune running now sees our note after it releases its lock.
      if (!result.ran) return;
      // Nobody asked while we pruned: done. (The note is read after our lock was released.)
      if ((await store.readNote(PRUNE_PENDING)) === mark) return;
    }
  } catch (error) {
    context.emit({
      type: "warning",
      handle: context.handle,
      message: `pruning the cache ${store.location} to its size cap failed: ${(error as Error).message}`,
    });
  }
}
