/**
 * What dead downloads leave behind, found and removed whenever hubcache looks (TF Hub never removes
 * them). Which leftovers belong to whom is read from names: `<hash>.lock` holds "host.pid.uid", the
 * holder's temp dir is `<hash>.<uid>.tmp`, and hubcache's own temp files end in `.tmp<uid>`.
 * - On a miss, while holding the entry's lock, the whole cache directory is swept: locks whose holder
 *   on this host is gone (with their temp dirs and files), and temp dirs and files that belong to no
 *   current lock and have not changed for the stale window.
 * - On a hit with a lock beside the entry (a holder killed between publishing and unlocking): that
 *   lock, if its holder is gone, and its leftovers (its descriptor and record are installed if they
 *   belong to the entry in place). Best effort: a read-only cache still serves hits.
 * Everything here ignores errors: cleaning up must never fail a resolve.
 */
import { promises as fs } from "node:fs";
import path from "node:path";
import type { EventListener } from "../events.js";
import { newestMtime } from "./file-tree.js";
import { holderIsGone, ownLockUids } from "./holder.js";
import { type EntryPaths, entryPathsForHash, parseLockContent } from "./layout.js";
import {
  GONE_QUIET_MS,
  type LockState,
  breakGuardIfStale,
  holderGoneAndQuiet,
  readLockFile,
  removeLeftovers,
  removeLockIf,
} from "./disk-lock.js";
import type { DiskRecord } from "./record.js";

const LOCK_NAME = /^([0-9a-f]{40})\.lock$/;
const TMP_DIR_NAME = /^([0-9a-f]{40})\.([0-9a-f]{32})\.tmp$/;
const TMP_FILE_NAME =
  /^([0-9a-f]{40})\.(?:lock|lock\.guard|descriptor\.txt|hubcache\.json)\.tmp([0-9a-f]{32})$/;
const GUARD_NAME = /^[0-9a-f]{40}\.lock\.guard$/;

export interface SweepOptions {
  /** Leftovers untouched for longer than this, and owned by no current lock, are removed. */
  timeoutMs: number;
  emit: EventListener;
}

/** Sweep the whole cache directory (see the module comment). */
export async function sweepCacheDir(cacheDir: string, options: SweepOptions): Promise<void> {
  let names: string[];
  try {
    names = await fs.readdir(cacheDir);
  } catch {
    return;
  }
  const now = Date.now();
  const liveLocks = await removeGoneLocks(cacheDir, names, now, options);
  for (const name of names) {
    if (GUARD_NAME.test(name)) await breakGuardIfStale(path.join(cacheDir, name)).catch(() => false);
    const [, hash, uid] = TMP_DIR_NAME.exec(name) ?? TMP_FILE_NAME.exec(name) ?? [];
    if (hash === undefined || uid === undefined) continue;
    if (liveLocks.get(hash)?.owner.uid === uid) continue; // the current holder's
    await removeOrphanTemp(cacheDir, name, hash, uid, now, options).catch(() => undefined); // best effort
  }
}

/** Remove the locks whose holder is gone (with what they left); the others, by hash. */
async function removeGoneLocks(
  cacheDir: string,
  names: string[],
  now: number,
  options: SweepOptions,
): Promise<Map<string, LockState>> {
  const liveLocks = new Map<string, LockState>();
  for (const name of names) {
    const hash = LOCK_NAME.exec(name)?.[1];
    if (hash === undefined) continue;
    try {
      const paths = entryPathsForHash(cacheDir, hash);
      const lock = await readLockFile(paths.lock);
      if (!lock) continue;
      if ((await holderGoneAndQuiet(paths, lock, now)) && (await removeLockIf(paths.lock, lock))) {
        options.emit({ type: "orphan-removed", path: paths.lock });
        await adoptRecords(paths, lock.owner.uid); // it may have published before it died
        await removeLeftovers(paths, lock.owner.uid, options.emit);
      } else {
        liveLocks.set(hash, lock);
      }
    } catch {
      // best effort
    }
  }
  return liveLocks;
}

/** A temp dir or file of no current lock: removed once quiet for the window (a record is adopted). */
async function removeOrphanTemp(
  cacheDir: string,
  name: string,
  hash: string,
  uid: string,
  now: number,
  options: SweepOptions,
): Promise<void> {
  const full = path.join(cacheDir, name);
  const newest = await newestMtime(full);
  if (newest === undefined) return;
  // A lock being created (written whole, then linked) by a process now dead on this host is
  // garbage at once, like that process's lock; anything else waits out the window.
  if (now - newest <= options.timeoutMs && !(await deadLockInTheMaking(full, name, newest))) return;
  // A descriptor or record of an entry its writer published before dying: install, not delete.
  if (TMP_FILE_NAME.test(name)) {
    await adoptRecords(entryPathsForHash(cacheDir, hash), uid);
    const adopted = await fs.lstat(full).then(
      () => false,
      () => true,
    );
    if (adopted) return;
  }
  await fs.rm(full, { recursive: true, force: true, maxRetries: 3 });
  options.emit({ type: "orphan-removed", path: full });
}

/**
 * A hit found a lock beside the entry. If its holder is gone, it was killed after publishing the
 * entry: remove the lock and its leftovers, and keep its record of the entry if it was about to
 * install it. No quiet period is needed: the entry is complete, so a holder misjudged as gone has
 * nothing left to do but unlock, and unlocking a lock that is not there is harmless.
 */
export async function cleanupAfterGoneHolder(paths: EntryPaths, emit: EventListener): Promise<void> {
  try {
    const lock = await readLockFile(paths.lock);
    if (!lock || !holderIsGone(lock.owner, lock.mtimeMs, ownLockUids())) return;
    if (!(await removeLockIf(paths.lock, lock))) return;
    emit({ type: "orphan-removed", path: paths.lock });
    await adoptRecords(paths, lock.owner.uid);
    await removeLeftovers(paths, lock.owner.uid, emit);
  } catch {
    // best effort: a read-only cache keeps serving hits
  }
}

/**
 * Install a dead holder's descriptor and record of the entry if its record describes the directory
 * now in place (it published that directory and was killed before installing them).
 */
async function adoptRecords(paths: EntryPaths, uid: string): Promise<void> {
  const tmp = `${paths.record}.tmp${uid}`;
  try {
    const record = JSON.parse(await fs.readFile(tmp, "utf8")) as Partial<DiskRecord>;
    const dir = await fs.stat(paths.dir);
    const same = record.ino === dir.ino && record.dev === dir.dev && record.birthtimeMs === dir.birthtimeMs;
    if (!same) return;
    await fs.rename(`${paths.descriptor}.tmp${uid}`, paths.descriptor).catch(() => undefined);
    await fs.rename(tmp, paths.record);
  } catch {
    // not there, or not about this directory: removeLeftovers deletes them
  }
}

/** `<hash>.lock.tmp<uid>` whose content names a process on this host that is gone. */
async function deadLockInTheMaking(full: string, name: string, mtimeMs: number): Promise<boolean> {
  // Quiet as long as a gone holder's lock must be: a host name shared by two machines or PID
  // namespaces must not make a live process's half-made lock look dead.
  if (!/\.lock\.tmp[0-9a-f]{32}$/.test(name) || Date.now() - mtimeMs <= GONE_QUIET_MS) return false;
  const content = await fs.readFile(full, "utf8").catch(() => undefined);
  if (content === undefined || content.trim() === "") return false;
  return holderIsGone(parseLockContent(content), mtimeMs, ownLockUids());
}
