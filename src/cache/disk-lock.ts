/**
 * The download lock `<hash>.lock`, compatible with Python tensorflow_hub (same name, same
 * "hostname.pid.uid" content, same `<hash>.<uid>.tmp` download dir that its stale detector measures),
 * and stronger:
 * - created atomically and exclusively, content included (link() of a fully written temp file;
 *   an O_EXCL create where the filesystem has no hard links);
 * - the holder keeps the lock file open and touches its mtime (through that descriptor, so never
 *   someone else's lock) at most once a second, by the heartbeat policy of lock-wait.ts;
 * - a holder on this host that is gone (dead PID, reused PID, zombie) is taken over within seconds;
 * - any other holder is taken over only after `timeoutMs` without progress (lock content or mtime, or
 *   the byte size of its temp dir), so a holder that progresses, even on another host, is never robbed;
 * - every removal takes a short-lived guard (`<hash>.lock.guard`) and checks the lock again under it,
 *   so two waiters that judge the same lock stale never remove the lock one of them has just created;
 * - permission and missing-directory errors fail at once (TF Hub issues #415, #261).
 * The lock only saves bandwidth: correctness comes from unique temp dirs and an atomic rename, and a
 * holder that lost its lock never publishes (ensure-entry.ts, disk-store.ts). The waiting loop is
 * lock-wait.ts's, shared with the object-storage lock.
 */
import { promises as fs } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { ErrorCode, HubcacheError, errnoCode, notWritableError, writeFailure } from "../errors.js";
import type { EventListener } from "../events.js";
import { NotADirectoryError } from "../make-dirs.js";
import { newUid } from "../uid.js";
import type { CacheDirHint } from "./entry-store.js";
import { newestMtime, treeSize } from "./file-tree.js";
import { holderIsGone, ownLockUids } from "./holder.js";
import {
  type HeldLock,
  type LockKind,
  type LockSighting,
  type TakeoverReason,
  type WaitOptions,
  waitForLock,
} from "./lock-wait.js";
import { type EntryPaths, type LockOwner, lockContent, parseLockContent } from "./layout.js";

/**
 * How to wait for a disk lock (see lock-wait.ts). `cacheDirHint`: which setting chose the cache
 * dir, for the hint of a not-writable error.
 */
export type LockOptions = WaitOptions & { cacheDirHint?: CacheDirHint | undefined };

export type { HeldLock };

/** The heartbeat: touch the lock at most this often. */
export const HEARTBEAT_MS = 1000;
/**
 * A gone holder's lock and temp dir must also have been quiet this long: a host name shared by two
 * machines or PID namespaces (containers) must not make a live, progressing holder look dead.
 */
export const GONE_QUIET_MS = 2000;
const FIRST_REPORT_MS = 1000;

/** Errors that no amount of waiting fixes (TF Hub issues #415, #261). */
const PERMANENT = new Set(["EACCES", "EPERM", "EROFS", "ENOENT", "ENOTDIR", "ENOSPC", "EDQUOT", "EINVAL"]);

export function isPermanentFsError(error: unknown): boolean {
  return PERMANENT.has(errnoCode(error) ?? "");
}

/**
 * The cache directory cannot be written (or does not exist, or cannot be created):
 * ERR_HUBCACHE_NOT_WRITABLE, or ERR_HUBCACHE_DISK_FULL when it is full. `hintFor` says which setting
 * chose the cache dir and to point it at a target (config.ts cacheDirHint).
 */
export function cacheDirNotWritable(
  dir: string,
  handle: string | undefined,
  cause: unknown,
  hintFor?: CacheDirHint,
): HubcacheError {
  const consequence = handle === undefined ? "" : `, so ${handle} cannot be downloaded into it`;
  if (cause instanceof NotADirectoryError) {
    const what =
      cause.path === dir
        ? `The cache directory ${dir} is a file, not a directory`
        : `The cache directory ${dir} cannot be created: ${cause.path} is a file, not a directory`;
    return new HubcacheError(ErrorCode.NOT_WRITABLE, `${what}${consequence}.`, {
      handle,
      hint: hintFor
        ? `Move that file out of the way. ${hintFor("a directory")}`
        : "Move that file out of the way, or set TFHUB_CACHE_DIR (or --cache-dir / the cacheDir option) to a directory.",
      cause,
    });
  }
  const code = errnoCode(cause) ?? "error";
  const verb = code === "ENOENT" ? "cannot be created" : "is not writable";
  const text = {
    handle,
    what: `the cache directory ${dir}`,
    notWritableMessage: `The cache directory ${dir} ${verb} (${code})${consequence}.`,
    notWritableHint: `Set TFHUB_CACHE_DIR (or --cache-dir / the cacheDir option) to a directory you can write, e.g. ~/.cache/tfhub_modules.${hintFor ? ` ${hintFor("a writable directory")}` : ""}`,
  };
  const mapped = writeFailure(cause, text);
  return mapped instanceof HubcacheError ? mapped : notWritableError(cause, text);
}

/** Create `file` holding `content`, exclusively; undefined if it exists. Keeps it open for the heartbeat. */
async function createExclusive(file: string, content: string): Promise<FileHandle | undefined> {
  const tmp = `${file}.tmp${newUid()}`;
  const handle = await fs.open(tmp, "wx");
  let linked = false;
  try {
    await handle.writeFile(content);
    try {
      await fs.link(tmp, file);
      linked = true;
      return handle;
    } catch (error) {
      const code = errnoCode(error);
      if (code === "EEXIST") return undefined;
      if (code !== "EPERM" && code !== "ENOTSUP" && code !== "ENOSYS" && code !== "EXDEV") throw error;
    }
    // No hard links on this filesystem: O_EXCL create, then the content.
    let direct: FileHandle;
    try {
      direct = await fs.open(file, "wx");
    } catch (error) {
      if (errnoCode(error) === "EEXIST") return undefined;
      throw error;
    }
    await direct.writeFile(content).catch(async (error: unknown) => {
      await direct.close();
      await fs.rm(file, { force: true });
      throw error;
    });
    return direct;
  } finally {
    if (!linked) await handle.close().catch(() => undefined);
    await fs.rm(tmp, { force: true }).catch(() => undefined);
  }
}

export interface LockState {
  /** "" when the lock cannot be read (then only its mtime tells progress). */
  content: string;
  owner: LockOwner;
  mtimeMs: number;
  ino: number;
}

export async function readLockFile(file: string): Promise<LockState | undefined> {
  try {
    const stat = await fs.stat(file);
    let content = "";
    try {
      content = await fs.readFile(file, "utf8");
    } catch (error) {
      if (errnoCode(error) === "ENOENT") return undefined;
      if (errnoCode(error) !== "EACCES") throw error;
    }
    return { content, owner: parseLockContent(content), mtimeMs: stat.mtimeMs, ino: stat.ino };
  } catch (error) {
    if (errnoCode(error) === "ENOENT") return undefined;
    throw error;
  }
}

/** A guard untouched this long was left by a crashed remover (it is held for milliseconds). */
export const GUARD_STALE_MS = 5000;

/** The guard that serializes removals of `lock`: `<hash>.lock.guard`. */
export function lockGuardPath(lock: string): string {
  return `${lock}.guard`;
}

/**
 * Remove the lock `file` only if it is still the one we looked at (`expected` content, `ino`).
 * Every remover (a takeover, a sweep, a holder releasing its own lock) first takes the guard
 * `<hash>.lock.guard`, created exclusively, then checks and unlinks: so a lock created a moment ago by
 * a waiter is never removed by another waiter that judged its predecessor stale, and the lock file is
 * never absent while some holder still has it. (An earlier rename-check-put-back scheme had a window
 * where a third waiter could create a lock while a newer one was moved aside: two holders.)
 * True if we removed it.
 */
export async function removeLockIf(
  file: string,
  expected: { content: string; ino?: number },
): Promise<boolean> {
  const guard = await takeGuard(lockGuardPath(file));
  try {
    const current = await readLockFile(file);
    if (!current || current.content !== expected.content) return false;
    if (expected.ino !== undefined && current.ino !== expected.ino) return false;
    try {
      await fs.unlink(file);
    } catch (error) {
      if (errnoCode(error) === "ENOENT") return false;
      throw error;
    }
    return true;
  } finally {
    await guard.release();
  }
}

/** Take the removal guard, waiting while another remover holds it (milliseconds) or breaking a stale one. */
async function takeGuard(guard: string): Promise<{ release(): Promise<void> }> {
  const content = lockContent(newUid());
  for (let attempt = 0; ; attempt++) {
    const file = await createGuard(guard, content);
    if (file) {
      return {
        async release() {
          // Still ours? (Only a remover that judged us stale would have replaced it.) Compared while
          // our descriptor is open, so its inode number cannot have been given to a new guard.
          const [mine, current] = await Promise.all([
            file.stat().catch(() => undefined),
            fs.stat(guard).catch(() => undefined),
          ]);
          if (mine && current && current.ino === mine.ino && current.dev === mine.dev) {
            await fs.rm(guard, { force: true }).catch(() => undefined);
          }
          await file.close().catch(() => undefined);
        },
      };
    }
    await breakGuardIfStale(guard);
    // Removers hold the guard for a few system calls: poll fast, with jitter so waiters spread out.
    await sleep(Math.min(1 + attempt, 20) + Math.random() * 3);
  }
}

/**
 * The guard with its holder's name in it; on a full disk (no block for the content), an empty one,
 * which breakGuardIfStale judges by its age alone. Removing a lock must work on a full disk.
 */
async function createGuard(guard: string, content: string): Promise<FileHandle | undefined> {
  try {
    return await createExclusive(guard, content);
  } catch (error) {
    const code = errnoCode(error);
    if (code !== "ENOSPC" && code !== "EDQUOT") throw error;
    try {
      return await fs.open(guard, "wx");
    } catch (inner) {
      if (errnoCode(inner) === "EEXIST") return undefined;
      throw inner;
    }
  }
}

/**
 * Remove a guard whose holder is gone (this host, dead PID) or that is older than GUARD_STALE_MS.
 * Two breakers may race here; the worst outcome is two removers at once, i.e. the pre-guard
 * behaviour in a crash-after-crash corner, and even then correctness never depends on the lock.
 */
export async function breakGuardIfStale(guard: string): Promise<boolean> {
  try {
    const stat = await fs.stat(guard);
    const content = await fs.readFile(guard, "utf8").catch(() => "");
    // Older than GUARD_STALE_MS, or as far in the future (a crashed remover on a host whose clock
    // runs ahead, on a shared filesystem), or left by a process that is gone.
    const stale =
      Math.abs(Date.now() - stat.mtimeMs) > GUARD_STALE_MS ||
      (content !== "" && holderIsGone(parseLockContent(content), stat.mtimeMs, ownLockUids()));
    if (!stale) return false;
    const again = await fs.stat(guard);
    if (again.ino !== stat.ino) return false;
    await fs.unlink(guard);
    return true;
  } catch (error) {
    if (errnoCode(error) === "ENOENT") return false;
    throw error;
  }
}

/** Remove what a holder with `uid` left for this entry: its temp dir and its temp files. */
export async function removeLeftovers(paths: EntryPaths, uid: string, emit: EventListener): Promise<void> {
  if (!/^[0-9a-f]{32}$/.test(uid)) return;
  const targets = [
    paths.tmpDir(uid),
    `${paths.lock}.tmp${uid}`,
    `${paths.descriptor}.tmp${uid}`,
    `${paths.record}.tmp${uid}`,
  ];
  for (const target of targets) {
    try {
      await fs.lstat(target);
    } catch {
      continue;
    }
    await fs.rm(target, { recursive: true, force: true, maxRetries: 3 }).catch(() => undefined);
    emit({ type: "orphan-removed", path: target });
  }
}

/**
 * Is the lock's holder gone for good (see holder.ts), and have its lock and temp dir been quiet for
 * GONE_QUIET_MS? Such a lock can be taken over at once.
 */
export async function holderGoneAndQuiet(paths: EntryPaths, lock: LockState, now: number): Promise<boolean> {
  if (!holderIsGone(lock.owner, lock.mtimeMs, ownLockUids())) return false;
  if (now - lock.mtimeMs < GONE_QUIET_MS) return false;
  if (!lock.owner.uid) return true;
  const newest = await newestMtime(paths.tmpDir(lock.owner.uid)).catch(() => undefined);
  return newest === undefined || now - newest >= GONE_QUIET_MS;
}

async function holderTmpBytes(paths: EntryPaths, owner: LockOwner): Promise<number> {
  if (!owner.uid) return 0;
  // An unreadable temp dir (another user's) counts as not growing; the lock's mtime still tells.
  return treeSize(paths.tmpDir(owner.uid)).catch(() => 0);
}

/** A disk lock as a waiter sees it. */
interface DiskSighting extends LockSighting {
  lock: LockState;
}

/**
 * Take the lock, waiting for (or taking over from) another holder (lock-wait.ts). Resolves to
 * `undefined` when the entry became ready while waiting: the caller then uses it without downloading.
 */
export async function acquireLock(paths: EntryPaths, options: LockOptions): Promise<HeldLock | undefined> {
  const uid = newUid();
  const content = lockContent(uid);
  const kind: LockKind<DiskSighting> = {
    pollMs: 250,
    firstReportMs: FIRST_REPORT_MS,
    async tryCreate() {
      let file: FileHandle | undefined;
      try {
        file = await createExclusive(paths.lock, content);
      } catch (error) {
        if (isPermanentFsError(error)) {
          throw cacheDirNotWritable(paths.cacheDir, options.handle, error, options.cacheDirHint);
        }
        throw error;
      }
      return file && heldDiskLock(paths, uid, content, file);
    },
    async look() {
      const lock = await readLockFile(paths.lock);
      return (
        lock && {
          lock,
          content: lock.content,
          identity: `${lock.content}\n${lock.ino}`,
          heartbeat: String(lock.mtimeMs),
        }
      );
    },
    measure: (seen) => holderTmpBytes(paths, seen.lock.owner),
    async judge(seen, now) {
      return (await holderGoneAndQuiet(paths, seen.lock, now)) ? "holder-dead" : undefined;
    },
    takeOver: (seen, reason) => removeStaleLock(paths, seen.lock, reason, options),
    afterTakeover: (seen) =>
      // Its temp dir is an orphan now. A hubcache holder that comes back never publishes it (it lost
      // the lock); a Python one that comes back finds its directory gone and fails.
      removeLeftovers(paths, seen.lock.owner.uid, options.emit),
  };
  return waitForLock(kind, options);
}

/**
 * Take the lock without waiting (cache management: rm, prune and its cache-wide lock). A lock
 * whose holder is gone, or that has shown no progress (its mtime, its temp dir's) for `timeoutMs`,
 * is taken over; any other holder keeps it and this returns undefined.
 */
export async function tryAcquireLock(
  paths: EntryPaths,
  options: { handle: string; emit: EventListener; timeoutMs: number },
): Promise<HeldLock | undefined> {
  const uid = newUid();
  const content = lockContent(uid);
  for (let attempt = 0; attempt < 2; attempt++) {
    let file: FileHandle | undefined;
    try {
      file = await createExclusive(paths.lock, content);
    } catch (error) {
      if (isPermanentFsError(error)) throw cacheDirNotWritable(paths.cacheDir, options.handle, error);
      throw error;
    }
    if (file) return heldDiskLock(paths, uid, content, file);
    if (attempt > 0) return undefined;
    const lock = await readLockFile(paths.lock);
    if (lock && !(await lockIsStale(paths, lock, options.timeoutMs))) return undefined;
    if (lock && (await removeLockIf(paths.lock, lock))) {
      options.emit({ type: "orphan-removed", path: paths.lock });
      await removeLeftovers(paths, lock.owner.uid, options.emit);
    }
  }
  return undefined;
}

/** Gone (and quiet), or neither the lock nor its holder's temp dir changed for `timeoutMs`. */
async function lockIsStale(paths: EntryPaths, lock: LockState, timeoutMs: number): Promise<boolean> {
  const now = Date.now();
  if (await holderGoneAndQuiet(paths, lock, now)) return true;
  if (now - lock.mtimeMs <= timeoutMs) return false;
  if (!lock.owner.uid) return true;
  const newest = await newestMtime(paths.tmpDir(lock.owner.uid)).catch(() => now);
  return newest === undefined || now - newest > timeoutMs;
}

/** Remove a lock judged stale, if it is still the one judged; permission errors say what to do. */
async function removeStaleLock(
  paths: EntryPaths,
  lock: LockState,
  reason: TakeoverReason,
  options: LockOptions,
): Promise<boolean> {
  try {
    return await removeLockIf(paths.lock, lock);
  } catch (error) {
    if (!isPermanentFsError(error)) throw error;
    throw new HubcacheError(
      ErrorCode.NOT_WRITABLE,
      `The download lock ${paths.lock} (held by ${lock.content || "an unknown holder"}, ${reason === "holder-dead" ? "which is gone" : "which made no progress"}) cannot be removed (${errnoCode(error)}).`,
      {
        handle: options.handle,
        hint: "Remove that lock file by hand (or ask its owner to), or set TFHUB_CACHE_DIR to a cache directory you own.",
        cause: error,
      },
    );
  }
}

function heldDiskLock(paths: EntryPaths, uid: string, content: string, file: FileHandle): HeldLock {
  const own = ownLockUids();
  own.add(uid);
  let lastTouch = Date.now();
  let touching = false;
  let released = false;
  return {
    content,
    uid,
    takenOverFrom: undefined,
    touch() {
      const now = Date.now();
      if (released || touching || now - lastTouch < HEARTBEAT_MS) return false;
      lastTouch = now;
      touching = true;
      const time = new Date(now);
      // Through our own descriptor: if the lock was taken over, this touches only our old inode.
      file
        .utimes(time, time)
        .catch(() => undefined)
        .finally(() => (touching = false));
      return true;
    },
    async stillHeld() {
      try {
        const [mine, current] = await Promise.all([file.stat(), fs.stat(paths.lock)]);
        return mine.ino === current.ino && mine.dev === current.dev;
      } catch {
        return false;
      }
    },
    async release() {
      if (released) return;
      released = true;
      own.delete(uid);
      const ino = (await file.stat().catch(() => undefined))?.ino;
      await file.close().catch(() => undefined);
      await removeLockIf(paths.lock, { content, ...(ino === undefined ? {} : { ino }) });
    },
  };
}
