/**
 * The cache on a local filesystem: inspect an entry, and when it is missing, download it into a
 * unique temp dir and publish it with one rename. Nothing half-made is ever visible under the
 * entry's name; a crash leaves only a temp dir, temp files and a lock, which the next run removes
 * (orphans.ts). The protocol is described in docs/concurrency.md.
 */
import { promises as fs, statSync } from "node:fs";
import { ErrorCode, HubcacheError, LockLost, errnoCode } from "../errors.js";
import type { EventListener } from "../events.js";
import { listTree, removeTree } from "./fs-util.js";
import { type EntryPaths, descriptorText } from "./layout.js";
import { type HeldLock, acquireLock, notWritableError } from "./lock.js";
import { MANIFEST_VERSION, type Manifest, inspectEntry } from "./manifest.js";
import { cleanupAfterGoneHolder, sweepCacheDir } from "./orphans.js";
import { testPause } from "./test-pause.js";

export interface DownloadReport {
  /** Compressed bytes received. */
  archiveBytes: number;
}

/**
 * What a download running under the entry's lock may ask of it, besides marking progress.
 * - `ensureHeld()`: throws LockLost if the lock was taken over. Call it before each attempt (first
 *   try, retries, restarts): a holder judged stalled must stop at once, not download or extract into
 *   a temp dir the new holder has removed.
 * - `waiting()`: call it about once a second while deliberately waiting between attempts (backoff,
 *   Retry-After): a live holder honouring the host is not stalled. Never from a free-running timer:
 *   a holder frozen mid-download must still be judged stale after the window.
 */
export interface DownloadLease {
  ensureHeld(): Promise<void>;
  waiting(): void;
}

/**
 * Fills `tmpDir` with the model. `touch` marks progress (it refreshes the lock); `lease` is there
 * when a lock is held (see DownloadLease).
 */
export type Downloader = (
  tmpDir: string,
  touch: () => void,
  lease?: DownloadLease,
) => Promise<DownloadReport>;

export interface EnsureEntryOptions {
  handle: string;
  offline: boolean;
  lockTimeoutMs: number;
  emit: EventListener;
  signal?: AbortSignal | undefined;
}

/** A holder that lost its lock (taken over as stale) does not publish; it starts over this often at most. */
const MAX_LOCK_LOSSES = 3;

interface Running {
  work: Promise<string>;
  signal: AbortSignal | undefined;
}

/** In-process de-duplication: concurrent calls for one entry share one download. */
const inFlight = new Map<string, Running>();

/** The fast path: a usable entry's directory, or undefined. Reads only. */
export function findCached(paths: EntryPaths, handle: string, emit: EventListener): string | undefined {
  const state = inspectEntry(paths);
  if (state.state === "hit") {
    emit({ type: "cache-hit", handle, path: paths.dir, writer: state.writer });
    return paths.dir;
  }
  return undefined;
}

export function ensureEntry(
  paths: EntryPaths,
  download: Downloader,
  options: EnsureEntryOptions,
): Promise<string> {
  const cached = findCached(paths, options.handle, options.emit);
  if (cached !== undefined) {
    // A lock beside a complete entry is left by a holder killed after publishing; one stat to know.
    if (!lockPresent(paths)) return Promise.resolve(cached);
    return cleanupAfterGoneHolder(paths, options.emit).then(() => cached);
  }
  if (options.offline) {
    return Promise.reject(
      new HubcacheError(
        ErrorCode.OFFLINE,
        `Offline mode is on and ${options.handle} is not in the cache (${paths.cacheDir}).`,
        {
          handle: options.handle,
          hint: "Resolve it once with network access (unset HUBCACHE_OFFLINE / drop --offline), or check TFHUB_CACHE_DIR points at the cache that has it.",
        },
      ),
    );
  }
  const running = inFlight.get(paths.dir);
  if (running) return joinRunning(running, paths, download, options);
  const work = downloadEntry(paths, download, options).finally(() => inFlight.delete(paths.dir));
  inFlight.set(paths.dir, { work, signal: options.signal });
  return work;
}

function lockPresent(paths: EntryPaths): boolean {
  try {
    return statSync(paths.lock, { throwIfNoEntry: false }) !== undefined;
  } catch {
    return false; // cannot even look: nothing we could clean up
  }
}

/**
 * Share a download already running in this process. The caller's own signal still aborts its own
 * wait, and if the download failed only because its first caller aborted, this caller starts over.
 */
function joinRunning(
  running: Running,
  paths: EntryPaths,
  download: Downloader,
  options: EnsureEntryOptions,
): Promise<string> {
  const shared = running.work.catch((error: unknown) => {
    if (running.signal?.aborted && !options.signal?.aborted) return ensureEntry(paths, download, options);
    throw error;
  });
  const { signal } = options;
  if (!signal) return shared;
  return new Promise<string>((resolve, reject) => {
    const onAbort = (): void =>
      reject(
        new HubcacheError(ErrorCode.ABORTED, `Resolving ${options.handle} was aborted.`, {
          handle: options.handle,
          cause: signal.reason,
        }),
      );
    if (signal.aborted) onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    shared.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

async function downloadEntry(
  paths: EntryPaths,
  download: Downloader,
  options: EnsureEntryOptions,
): Promise<string> {
  const { handle, emit } = options;
  try {
    await fs.mkdir(paths.cacheDir, { recursive: true });
  } catch (error) {
    throw notWritableError(paths.cacheDir, handle, error);
  }
  for (let losses = 0; ; losses++) {
    const lock = await acquireLock(paths, {
      handle,
      timeoutMs: options.lockTimeoutMs,
      emit,
      signal: options.signal,
      entryReady: () => inspectEntry(paths).state === "hit",
    });
    if (!lock) return paths.dir; // another process published it while we waited

    // Leftovers of dead downloads, this entry's and others': removed while we download.
    const sweep = sweepCacheDir(paths.cacheDir, { timeoutMs: options.lockTimeoutMs, emit });
    let published: string | undefined;
    try {
      published = await downloadUnderLock(paths, lock, download, options);
    } finally {
      await sweep;
      await lock.release().catch(() => undefined);
    }
    if (published !== undefined) return published;
    if (losses + 1 >= MAX_LOCK_LOSSES) {
      throw new HubcacheError(
        ErrorCode.IO,
        `The download lock of ${handle} was taken over ${MAX_LOCK_LOSSES} times while downloading.`,
        {
          handle,
          hint: "Another process judged this download stalled; raise HUBCACHE_LOCK_TIMEOUT (--lock-timeout) or check the network.",
        },
      );
    }
    emit({
      type: "warning",
      handle,
      message: `the download lock of ${handle} was taken over as stalled; this process stopped its download and waits for the new holder`,
    });
  }
}

/**
 * Download and publish while holding the lock. Returns the entry's path, or undefined if the lock
 * was lost before publishing (the caller starts over: someone else is downloading it now).
 */
async function downloadUnderLock(
  paths: EntryPaths,
  lock: HeldLock,
  download: Downloader,
  options: EnsureEntryOptions,
): Promise<string | undefined> {
  const { handle, emit } = options;
  let tmpDir: string | undefined;
  const descriptorTmp = `${paths.descriptor}.tmp${lock.uid}`;
  const manifestTmp = `${paths.manifest}.tmp${lock.uid}`;
  try {
    const state = inspectEntry(paths);
    if (state.state === "hit") return paths.dir;
    if (state.state === "incomplete" || state.state === "empty") {
      emit({
        type: "cache-incomplete",
        handle,
        path: paths.dir,
        reason: state.state === "empty" ? "the entry is empty" : state.reason,
      });
      await removeTree(paths.dir);
    }

    const started = Date.now();
    tmpDir = paths.tmpDir(lock.uid);
    await fs.mkdir(tmpDir);
    const lease: DownloadLease = {
      async ensureHeld() {
        if (!(await lock.stillHeld())) throw new LockLost(handle);
      },
      waiting() {
        lock.touch();
      },
    };
    const report = await download(
      tmpDir,
      () => {
        if (lock.touch()) testPause("during-download");
      },
      lease,
    );
    testPause("after-extract");
    const files = await listTree(tmpDir);
    if (files.length === 0) {
      throw new HubcacheError(ErrorCode.CORRUPT, `The archive of ${handle} holds no files.`, {
        handle,
        hint: "The host sent an empty model; check the handle.",
      });
    }
    const tmpStat = await fs.stat(tmpDir);
    const bytes = files.reduce((sum, file) => sum + file.size, 0);
    const manifest: Manifest = {
      version: MANIFEST_VERSION,
      handle,
      dev: tmpStat.dev,
      ino: tmpStat.ino,
      birthtimeMs: tmpStat.birthtimeMs,
      createdAt: new Date().toISOString(),
      bytes,
      archiveBytes: report.archiveBytes,
      files,
    };
    // Temp names carry the lock's uid, so whoever finds them after a crash knows whose they are.
    // Both stay under their temp names until our entry is in place (TF Hub renames its descriptor
    // before the entry: a lost or failed publish leaves it with no entry, or overwrites the winner's).
    await fs.writeFile(descriptorTmp, descriptorText(handle), { flag: "wx" });
    testPause("during-descriptor-write");
    await fs.writeFile(manifestTmp, JSON.stringify(manifest), { flag: "wx" });
    testPause("before-rename");

    // A holder judged stale and taken over must not publish: the new holder may have removed part
    // of our temp dir as an orphan. Someone else is downloading it now; wait for them instead.
    if (!(await lock.stillHeld())) return undefined;
    try {
      await fs.rename(tmpDir, paths.dir);
    } catch (error) {
      const code = errnoCode(error);
      if (code === "ENOTEMPTY" || code === "EEXIST" || code === "EISDIR" || code === "ENOTDIR") {
        // Someone else (Python, or a process that did not see our lock) published first: keep theirs.
        emit({ type: "publish-lost", handle, path: paths.dir });
        return paths.dir;
      }
      throw error;
    }
    tmpDir = undefined;
    testPause("after-rename");
    // Our entry is published: now its descriptor, then our record (the record comes last).
    for (const [tmp, final] of [
      [descriptorTmp, paths.descriptor],
      [manifestTmp, paths.manifest],
    ] as const) {
      await fs.rename(tmp, final).catch((error: unknown) => {
        // ENOENT: a process that judged us gone already installed it (orphans.ts adoptRecords).
        if (errnoCode(error) !== "ENOENT") throw error;
      });
    }
    testPause("before-release");
    emit({
      type: "published",
      handle,
      path: paths.dir,
      bytes,
      files: files.length,
      ms: Date.now() - started,
    });
    return paths.dir;
  } catch (error) {
    // Stopped because the lock was lost, or failed after losing it (e.g. the new holder removed our
    // temp dir as an orphan): the new holder is downloading it; wait for it rather than fail.
    if (!options.signal?.aborted && (error instanceof LockLost || !(await lock.stillHeld()))) {
      return undefined;
    }
    const code = errnoCode(error);
    if (code === "ENOSPC" || code === "EDQUOT" || code === "EACCES" || code === "EROFS") {
      throw notWritableError(paths.cacheDir, handle, error);
    }
    throw error;
  } finally {
    if (tmpDir !== undefined) await removeTree(tmpDir).catch(() => undefined);
    await fs.rm(descriptorTmp, { force: true }).catch(() => undefined);
    await fs.rm(manifestTmp, { force: true }).catch(() => undefined);
  }
}
