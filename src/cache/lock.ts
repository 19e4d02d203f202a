/**
 * The download lock `<hash>.lock`, compatible with Python tensorflow_hub (same name, same
 * "hostname.pid.uid" content, same temp-dir naming that its stale detector measures), and stronger:
 * - created atomically and exclusively, content included (link() of a written temp; O_EXCL fallback);
 * - the holder touches the lock's mtime as the download progresses;
 * - a holder on this host that is no longer alive is taken over at once;
 * - otherwise a lock with no progress (content, mtime, holder's temp dir size) for `timeoutMs` is taken over.
 * The lock only saves bandwidth: correctness comes from unique temp dirs and an atomic rename.
 */
import { promises as fs } from "node:fs";
import os from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import { ErrorCode, HubcacheError, errnoCode } from "../errors.js";
import type { EventListener } from "../events.js";
import { treeSize } from "./fs-util.js";
import { type EntryPaths, lockContent, newUid, parseLockContent } from "./layout.js";

export interface LockOptions {
  handle: string;
  timeoutMs: number;
  emit: EventListener;
  signal?: AbortSignal | undefined;
  /** Called on each poll while waiting; returning true stops the wait (the entry appeared). */
  entryReady: () => boolean;
  /** How often to poll a held lock. */
  pollMs?: number;
  /** How often to report a wait through a `lock-wait` event. */
  reportEveryMs?: number;
}

export interface HeldLock {
  content: string;
  uid: string;
  /** uid of a holder we took the lock over from (its temp dir is an orphan). */
  takenOverFrom: string | undefined;
  /** Mark progress: touches the lock's mtime, at most once a second. */
  touch(): void;
  release(): Promise<void>;
}

/** Errors that no amount of waiting fixes (TF Hub issues #415, #261). */
const PERMANENT = new Set(["EACCES", "EPERM", "EROFS", "ENOENT", "ENOTDIR", "ENOSPC", "EDQUOT", "EINVAL"]);

export function notWritableError(dir: string, handle: string, cause: unknown): HubcacheError {
  const code = errnoCode(cause);
  if (code === "ENOSPC" || code === "EDQUOT") {
    return new HubcacheError(ErrorCode.DISK_FULL, `No space left in the cache directory ${dir}.`, {
      handle,
      hint: "Free some space (hubcache prune), or point TFHUB_CACHE_DIR at a larger disk.",
      cause,
    });
  }
  return new HubcacheError(
    ErrorCode.NOT_WRITABLE,
    `The cache directory ${dir} is not writable (${code ?? "error"}), so ${handle} cannot be downloaded into it.`,
    {
      handle,
      hint: "Set TFHUB_CACHE_DIR (or --cache-dir / the cacheDir option) to a directory you can write, e.g. ~/.cache/tfhub_modules.",
      cause,
    },
  );
}

async function createExclusive(file: string, content: string): Promise<boolean> {
  const tmp = `${file}.tmp${newUid()}`;
  await fs.writeFile(tmp, content, { flag: "wx" });
  try {
    await fs.link(tmp, file);
    return true;
  } catch (error) {
    const code = errnoCode(error);
    if (code === "EEXIST") return false;
    if (code === "EPERM" || code === "ENOTSUP" || code === "ENOSYS" || code === "EXDEV") {
      // No hard links on this filesystem: O_EXCL create, then the content.
      try {
        await fs.writeFile(file, content, { flag: "wx" });
        return true;
      } catch (inner) {
        if (errnoCode(inner) === "EEXIST") return false;
        throw inner;
      }
    }
    throw error;
  } finally {
    await fs.rm(tmp, { force: true }).catch(() => undefined);
  }
}

/** Is process `pid` alive on this host? EPERM means it exists but is someone else's. */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return errnoCode(error) === "EPERM";
  }
}

interface Snapshot {
  content: string;
  mtimeMs: number;
  tmpBytes: number;
}

async function readSnapshot(paths: EntryPaths): Promise<Snapshot | undefined> {
  try {
    const [content, stat] = await Promise.all([fs.readFile(paths.lock, "utf8"), fs.stat(paths.lock)]);
    const owner = parseLockContent(content);
    const tmpBytes = owner.uid ? await treeSize(paths.tmpDir(owner.uid)) : 0;
    return { content, mtimeMs: stat.mtimeMs, tmpBytes };
  } catch (error) {
    if (errnoCode(error) === "ENOENT") return undefined;
    throw error;
  }
}

/** Remove the lock only if it still holds `content` (never someone else's fresh lock). */
async function removeIfContent(file: string, content: string): Promise<void> {
  try {
    if ((await fs.readFile(file, "utf8")) === content) await fs.unlink(file);
  } catch (error) {
    if (errnoCode(error) !== "ENOENT") throw error;
  }
}

/**
 * Take the lock, waiting for (or taking over from) another holder. Resolves to `undefined` when
 * the entry became ready while waiting: the caller then uses it without downloading.
 */
export async function acquireLock(paths: EntryPaths, options: LockOptions): Promise<HeldLock | undefined> {
  const uid = newUid();
  const content = lockContent(uid);
  const pollMs = options.pollMs ?? 250;
  const reportEveryMs = options.reportEveryMs ?? 5000;
  const started = Date.now();
  let lastReport = started;
  let last: Snapshot | undefined;
  let lastProgressAt = Date.now();
  let takenOverFrom: string | undefined;

  for (;;) {
    options.signal?.throwIfAborted();
    let created: boolean;
    try {
      created = await createExclusive(paths.lock, content);
    } catch (error) {
      if (PERMANENT.has(errnoCode(error) ?? "")) {
        throw notWritableError(paths.cacheDir, options.handle, error);
      }
      throw error;
    }
    if (created) return heldLock(paths, uid, content, takenOverFrom);

    if (options.entryReady()) return undefined;
    const now = Date.now();
    const snapshot = await readSnapshot(paths);
    if (snapshot === undefined) continue; // released between our attempt and our look: try again
    const owner = parseLockContent(snapshot.content);

    const deadHere =
      owner.host === os.hostname() &&
      owner.pid !== undefined &&
      (owner.pid === process.pid ? !ownUids.has(owner.uid) : !isProcessAlive(owner.pid));
    const progressed =
      last === undefined ||
      last.content !== snapshot.content ||
      last.mtimeMs !== snapshot.mtimeMs ||
      last.tmpBytes !== snapshot.tmpBytes;
    if (progressed) lastProgressAt = now;
    last = snapshot;

    if (deadHere || now - lastProgressAt > options.timeoutMs) {
      options.emit({
        type: "lock-takeover",
        handle: options.handle,
        holder: snapshot.content,
        reason: deadHere ? "holder-dead" : "no-progress",
      });
      await removeIfContent(paths.lock, snapshot.content);
      takenOverFrom = owner.uid || undefined;
      last = undefined;
      continue;
    }

    if (now - lastReport >= reportEveryMs) {
      lastReport = now;
      options.emit({
        type: "lock-wait",
        handle: options.handle,
        holder: snapshot.content,
        waitedMs: now - started,
      });
    }
    await sleep(pollMs, undefined, { signal: options.signal });
  }
}

/** uids of locks this process holds right now (a lock naming our pid but not these is a leftover). */
const ownUids = new Set<string>();

function heldLock(
  paths: EntryPaths,
  uid: string,
  content: string,
  takenOverFrom: string | undefined,
): HeldLock {
  ownUids.add(uid);
  let lastTouch = Date.now();
  let touching = false;
  return {
    content,
    uid,
    takenOverFrom,
    touch() {
      const now = Date.now();
      if (touching || now - lastTouch < 1000) return;
      lastTouch = now;
      touching = true;
      const time = new Date(now);
      fs.utimes(paths.lock, time, time)
        .catch(() => undefined)
        .finally(() => (touching = false));
    },
    async release() {
      ownUids.delete(uid);
      await removeIfContent(paths.lock, content);
    },
  };
}
