/**
 * The one cache algorithm, for every entry store (entry-store.ts): hit → offline error → in-process
 * de-duplication → lock → inspect again → repair → produce → commit. Described in
 * docs/concurrency.md. Nothing half-made is ever visible under the entry's name; a holder that lost
 * its lock never commits, it waits for the new holder.
 */
import { ErrorCode, HubcacheError, LockLost, abortedError, isAbortError } from "../errors.js";
import type { EventListener } from "../events.js";
import type { TreeFile } from "../storage/transfer.js";
import type { CacheDirHint, EntryState, EntryStore, EntryWriter, Staged } from "./entry-store.js";
import { listDirTree } from "./file-tree.js";
import { handleHash } from "./layout.js";
import type { HeldLock } from "./lock-wait.js";
import { testPause } from "./test-pause.js";

export interface DownloadReport {
  /** Compressed bytes received. */
  archiveBytes: number;
  /** Each file's CRC-32 and the archive's SHA-256, when the producer computed them (the record keeps them). */
  crc32ByPath?: ReadonlyMap<string, number> | undefined;
  archiveSha256?: string | undefined;
}

/**
 * What a producer running under the entry's lock may ask of it, besides marking progress.
 * - `ensureHeld()`: throws LockLost if the lock was taken over. Call it before each attempt (first
 *   try, retries, restarts): a holder judged stalled must stop at once, not download or extract into
 *   a temp dir the new holder has removed.
 * - `waiting()`: call it about once a second while deliberately waiting (a backoff, Retry-After,
 *   another lock): a live holder honouring the host is not stalled. Never from a free-running timer
 *   (the heartbeat policy of lock-wait.ts): a holder frozen mid-download must still go stale.
 */
export interface DownloadLease {
  ensureHeld(): Promise<void>;
  waiting(): void;
}

/** Fills `dir` with the model. `touch` marks progress (it refreshes the lock). */
export type Producer = (dir: string, touch: () => void, lease: DownloadLease) => Promise<DownloadReport>;

export interface EnsureEntryOptions {
  handle: string;
  /** Never produce: a miss throws ERR_HUBCACHE_OFFLINE. */
  offline: boolean;
  lockTimeoutMs: number;
  emit: EventListener;
  signal?: AbortSignal | undefined;
  /** Concurrent calls for one entry in this process share one download. Default true. */
  shareInProcess?: boolean | undefined;
  /** Called while waiting for the lock (two tiers: keeps the outer lock fresh). */
  whileWaiting?: (() => void) | undefined;
  /** Lock polling, for tests. */
  pollMs?: number | undefined;
  /**
   * A hint sentence saying which setting chose the cache and to point it at a target (config.ts
   * cacheDirHint). Default: hints name every setting that could have.
   */
  cacheDirHint?: CacheDirHint | undefined;
  /**
   * Cache management: a hit records the entry's use when its last recorded use is older than this
   * (ms), so a warm hit writes at most once per interval. Undefined: hits record nothing.
   */
  touchIntervalMs?: number | undefined;
  /** Cache management: called after this call published an entry and released its lock (the size cap). */
  afterPublish?: ((hash: string) => Promise<void>) | undefined;
}

export interface EnsuredEntry {
  hash: string;
  /** Where the entry is (a local path, or s3://bucket/prefix/<hash>). */
  location: string;
  /** The entry's files, when known without a walk. */
  files: TreeFile[] | undefined;
  /** True when this call's producer ran (the model is in its staging dir until committed). */
  produced: boolean;
}

/** A holder that lost its lock (taken over as stale) does not commit; it starts over this often at most. */
const MAX_LOCK_LOSSES = 3;

interface Running {
  work: Promise<EnsuredEntry>;
  signal: AbortSignal | undefined;
}

/** In-process de-duplication, by entry location: concurrent calls for one entry share one download. */
const inFlight = new Map<string, Running>();

/** Make sure the entry for `handle` is in `store`, producing it with `produce` on a miss. */
export async function ensureEntry(
  store: EntryStore,
  handle: string,
  produce: Producer,
  options: EnsureEntryOptions,
): Promise<EnsuredEntry> {
  const hash = handleHash(handle);
  const state = await store.inspect(hash);
  if (state.state === "hit") {
    const hit = reportHit(store, hash, state, options);
    await store.tidyAfterHit(hash, options);
    const interval = options.touchIntervalMs;
    if (
      interval !== undefined &&
      state.lastUsedMs !== undefined &&
      Date.now() - state.lastUsedMs >= interval
    ) {
      await store.touch(hash); // the entry's last use, for prune: at most once per interval
    }
    return hit;
  }
  if (options.offline) throw offlineError(store, handle, state, options.cacheDirHint);
  if (options.shareInProcess === false) return lockAndProduce(store, hash, produce, options);
  const key = store.locationOf(hash);
  const running = inFlight.get(key);
  if (running) return joinRunning(running, store, handle, produce, options);
  const work = lockAndProduce(store, hash, produce, options).finally(() => inFlight.delete(key));
  inFlight.set(key, { work, signal: options.signal });
  return work;
}

function reportHit(
  store: EntryStore,
  hash: string,
  state: { writer: EntryWriter; files: TreeFile[] | undefined },
  options: EnsureEntryOptions,
): EnsuredEntry {
  const location = store.locationOf(hash);
  options.emit({ type: "cache-hit", handle: options.handle, path: location, writer: state.writer });
  return { hash, location, files: state.files, produced: false };
}

function offlineError(
  store: EntryStore,
  handle: string,
  state: EntryState,
  hintFor: CacheDirHint | undefined,
): HubcacheError {
  const location = store.locationOf(handleHash(handle));
  if (state.state === "incomplete") {
    return new HubcacheError(
      ErrorCode.OFFLINE,
      `Offline mode is on and the cache entry of ${handle} (${location}) is incomplete: ${state.reason}.`,
      {
        handle,
        hint: "Resolve it once with network access (unset HUBCACHE_OFFLINE / drop --offline) to download it again.",
      },
    );
  }
  const which = hintFor
    ? hintFor("the cache that has it")
    : "Check that TFHUB_CACHE_DIR (--cache-dir) names the cache that has it.";
  const problem = store.describeMissing?.();
  return new HubcacheError(
    ErrorCode.OFFLINE,
    `Offline mode is on and ${handle} is not in the cache (${store.location}${problem === undefined ? "" : `: ${problem}`}).`,
    {
      handle,
      hint: `Resolve it once with network access (unset HUBCACHE_OFFLINE / drop --offline). ${which}`,
    },
  );
}

/**
 * Share a download already running in this process. The caller's own signal still aborts its own
 * wait, and if the download failed only because its first caller aborted, this caller starts over.
 */
function joinRunning(
  running: Running,
  store: EntryStore,
  handle: string,
  produce: Producer,
  options: EnsureEntryOptions,
): Promise<EnsuredEntry> {
  const shared = running.work.catch((error: unknown) => {
    if (running.signal?.aborted && !options.signal?.aborted) {
      return ensureEntry(store, handle, produce, options);
    }
    throw error;
  });
  const { signal } = options;
  if (!signal) return shared;
  return new Promise<EnsuredEntry>((resolve, reject) => {
    const onAbort = (): void => reject(abortedError(handle, `Resolving ${handle}`, signal.reason));
    if (signal.aborted) onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    shared.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/** Take the lock and produce under it; start over (a few times) when the lock is lost. */
async function lockAndProduce(
  store: EntryStore,
  hash: string,
  produce: Producer,
  options: EnsureEntryOptions,
): Promise<EnsuredEntry> {
  const { handle, emit } = options;
  try {
    for (let losses = 0; ; losses++) {
      const lock = await store.lock(hash, {
        handle,
        timeoutMs: options.lockTimeoutMs,
        emit,
        signal: options.signal,
        whileWaiting: options.whileWaiting,
        pollMs: options.pollMs,
      });
      if (!lock) return await entryAfterWait(store, hash, options);
      // Leftovers of dead downloads: removed while we produce.
      const sweep = store.sweep(hash, lock, options).catch(() => undefined);
      let entry: EnsuredEntry | undefined;
      try {
        entry = await produceUnderLock(store, hash, lock, produce, options);
      } finally {
        await sweep;
        await lock.release().catch(() => undefined);
      }
      if (entry) {
        if (entry.produced) await options.afterPublish?.(hash);
        return entry;
      }
      if (losses + 1 >= MAX_LOCK_LOSSES) throw tooManyLosses(handle);
      emit({
        type: "warning",
        handle,
        message: `the download lock of ${handle} was taken over as stalled; this process stopped its download and waits for the new holder`,
      });
    }
  } catch (error) {
    // Whatever stopped because the caller aborted (a lock wait, a transfer) says so with a code.
    if (options.signal?.aborted && (isAbortError(error) || !(error instanceof HubcacheError))) {
      throw abortedError(handle, `Resolving ${handle}`, error);
    }
    throw error;
  }
}

/** The entry became usable while we waited for its lock. */
async function entryAfterWait(
  store: EntryStore,
  hash: string,
  options: EnsureEntryOptions,
): Promise<EnsuredEntry> {
  const state = await store.inspect(hash);
  if (state.state === "hit") return reportHit(store, hash, state, options);
  throw new HubcacheError(
    ErrorCode.IO,
    `The cache entry for ${options.handle} at ${store.locationOf(hash)} vanished while it was awaited.`,
    { handle: options.handle, hint: "Someone deleted it; resolve again." },
  );
}

function tooManyLosses(handle: string): HubcacheError {
  return new HubcacheError(
    ErrorCode.IO,
    `The download lock of ${handle} was taken over ${MAX_LOCK_LOSSES} times while downloading.`,
    {
      handle,
      hint: "Another process judged this download stalled; raise HUBCACHE_LOCK_TIMEOUT (--lock-timeout) or check the network.",
    },
  );
}

/**
 * Under the lock: look again, repair, produce, commit. Undefined when the lock was lost before the
 * commit (the caller starts over: someone else is producing it now).
 */
async function produceUnderLock(
  store: EntryStore,
  hash: string,
  lock: HeldLock,
  produce: Producer,
  options: EnsureEntryOptions,
): Promise<EnsuredEntry | undefined> {
  const { handle, emit } = options;
  const location = store.locationOf(hash);
  const state = await store.inspect(hash, { underLock: true });
  if (state.state === "hit") return reportHit(store, hash, state, options);
  if (state.state === "incomplete") {
    emit({ type: "cache-incomplete", handle, path: location, reason: state.reason });
    await store.remove(hash);
  }
  let staged: Staged | undefined;
  try {
    staged = await store.stage(hash, lock, options);
    const started = Date.now();
    const touch = (): void => {
      if (lock.touch()) testPause("during-download");
    };
    const report = await produce(staged.dir, touch, leaseOf(lock, handle));
    testPause("after-extract");
    const files = await producedFiles(staged.dir, handle);
    const bytes = files.reduce((sum, file) => sum + file.size, 0);
    const produced = {
      handle,
      files,
      bytes,
      archiveBytes: report.archiveBytes,
      crc32ByPath: report.crc32ByPath,
      archiveSha256: report.archiveSha256,
    };
    const result = await store.commit(hash, staged, lock, produced, options);
    if (result.outcome === "lock-lost") return undefined;
    if (result.outcome === "lost-to-another-writer") {
      emit({ type: "publish-lost", handle, path: location });
      return { hash, location, files: result.files ?? files, produced: true };
    }
    testPause("before-release");
    emit({ type: "published", handle, path: location, bytes, files: files.length, ms: Date.now() - started });
    return { hash, location, files, produced: true };
  } catch (error) {
    // Stopped because the lock was lost, or failed after losing it (e.g. the new holder removed our
    // temp dir as an orphan): the new holder is producing it; wait for it rather than fail.
    if (!options.signal?.aborted && (error instanceof LockLost || !(await lock.stillHeld()))) {
      return undefined;
    }
    throw error;
  } finally {
    await staged?.cleanup().catch(() => undefined);
  }
}

/** The files a producer left in `dir`; none is an error (an empty archive). */
async function producedFiles(dir: string, handle: string): Promise<TreeFile[]> {
  const files = await listDirTree(dir);
  if (files.length === 0) {
    throw new HubcacheError(ErrorCode.CORRUPT, `The archive of ${handle} holds no files.`, {
      handle,
      hint: "The host sent an empty model; check the handle.",
    });
  }
  return files;
}

function leaseOf(lock: HeldLock, handle: string): DownloadLease {
  return {
    async ensureHeld() {
      if (!(await lock.stillHeld())) throw new LockLost(handle);
    },
    waiting() {
      lock.touch();
    },
  };
}
