/**
 * The cache on a local filesystem: inspect an entry, and when it is missing, download it into a
 * unique temp dir and publish it with one rename. Nothing half-made is ever visible under the
 * entry's name; a crash leaves only a temp dir and a lock, which the next run cleans up.
 */
import { promises as fs } from "node:fs";
import { ErrorCode, HubcacheError, errnoCode } from "../errors.js";
import type { EventListener } from "../events.js";
import { atomicWriteFile, listTree, removeTree, writeTempFile } from "./fs-util.js";
import { type EntryPaths, descriptorText, newUid } from "./layout.js";
import { type HeldLock, acquireLock, notWritableError } from "./lock.js";
import { MANIFEST_VERSION, type Manifest, inspectEntry } from "./manifest.js";

export interface DownloadReport {
  /** Compressed bytes received. */
  archiveBytes: number;
}

/** Fills `tmpDir` with the model. `touch` marks progress (it refreshes the lock). */
export type Downloader = (tmpDir: string, touch: () => void) => Promise<DownloadReport>;

export interface EnsureEntryOptions {
  handle: string;
  offline: boolean;
  lockTimeoutMs: number;
  emit: EventListener;
  signal?: AbortSignal | undefined;
}

/** In-process de-duplication: concurrent calls for one entry share one download. */
const inFlight = new Map<string, Promise<string>>();

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
  if (cached !== undefined) return Promise.resolve(cached);
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
  if (running) return running;
  const work = downloadEntry(paths, download, options).finally(() => inFlight.delete(paths.dir));
  inFlight.set(paths.dir, work);
  return work;
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

  const lock = await acquireLock(paths, {
    handle,
    timeoutMs: options.lockTimeoutMs,
    emit,
    signal: options.signal,
    entryReady: () => inspectEntry(paths).state === "hit",
  });
  if (!lock) return paths.dir; // another process published it while we waited

  let tmpDir: string | undefined;
  let manifestTmp: string | undefined;
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
    await removeOrphans(paths, lock, options);

    const started = Date.now();
    tmpDir = paths.tmpDir(lock.uid);
    await fs.mkdir(tmpDir);
    const report = await download(tmpDir, () => lock.touch());
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
    await atomicWriteFile(paths.descriptor, descriptorText(handle));
    manifestTmp = await writeTempFile(paths.manifest, JSON.stringify(manifest));
    try {
      await fs.rename(tmpDir, paths.dir);
    } catch (error) {
      const code = errnoCode(error);
      if (code === "ENOTEMPTY" || code === "EEXIST" || code === "EISDIR") {
        // Someone else (Python, or a process that did not see our lock) published first: keep theirs.
        emit({ type: "publish-lost", handle, path: paths.dir });
        return paths.dir;
      }
      throw error;
    }
    tmpDir = undefined;
    await fs.rename(manifestTmp, paths.manifest);
    manifestTmp = undefined;
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
    const code = errnoCode(error);
    if (code === "ENOSPC" || code === "EDQUOT" || code === "EACCES" || code === "EROFS") {
      throw notWritableError(paths.cacheDir, handle, error);
    }
    throw error;
  } finally {
    if (tmpDir !== undefined) await removeTree(tmpDir).catch(() => undefined);
    if (manifestTmp !== undefined) await fs.rm(manifestTmp, { force: true }).catch(() => undefined);
    await lock.release().catch(() => undefined);
  }
}

/**
 * While holding the lock, remove what dead downloads of this entry left: the temp dir of a holder
 * we took over from, and temp dirs and temp files nobody has touched for the stale window.
 */
async function removeOrphans(paths: EntryPaths, lock: HeldLock, options: EnsureEntryOptions): Promise<void> {
  let names: string[];
  try {
    names = await fs.readdir(paths.cacheDir);
  } catch {
    return;
  }
  const prefix = `${paths.hash}.`;
  const now = Date.now();
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const rest = name.slice(prefix.length);
    const tmpMatch = /^([0-9a-f]{32})\.tmp$/.exec(rest);
    const isTempFile = /\.tmp[0-9a-f]{32}$/.test(rest);
    if (!tmpMatch && !isTempFile) continue;
    if (tmpMatch && tmpMatch[1] === lock.uid) continue;
    const full = `${paths.cacheDir}/${name}`;
    let stale = tmpMatch !== null && tmpMatch[1] === lock.takenOverFrom;
    if (!stale) {
      try {
        stale = now - (await fs.stat(full)).mtimeMs > options.lockTimeoutMs;
      } catch {
        continue;
      }
    }
    if (stale) {
      await removeTree(full).catch(() => undefined);
      options.emit({ type: "orphan-removed", path: full });
    }
  }
}

/** Used by tests and tools: a new unique temp-dir id. */
export { newUid };
