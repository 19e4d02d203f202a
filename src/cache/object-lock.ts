/**
 * The download lock on object storage: the object `<hash>.lock` holding "hostname.pid.uid", as
 * TF Hub writes it. Created create-only where the store supports it (S3 `If-None-Match: *`, GCS
 * `ifGenerationMatch: 0`); elsewhere written and read back after a settle delay, which keeps two
 * writers apart in all but a narrow race. The lock only saves bandwidth: the entry is committed by
 * its record (see object-store.ts), so even two holders at once leave a correct cache.
 *
 * The holder rewrites the lock as its heartbeat, by the policy of lock-wait.ts (on progress, never
 * from a timer), at most every `timeoutMs / 4` (1 to 15 s): each rewrite is a request. A waiter
 * (lock-wait.ts's loop) takes the lock over when it has seen no change for the timeout, when the lock
 * is older than twice the timeout, or at once when the holder is a dead process on this host.
 */
import { text } from "node:stream/consumers";
import { setTimeout as sleep } from "node:timers/promises";
import { isObjectNotFound } from "../storage/errors.js";
import { probeCreateOnly } from "../storage/transfer.js";
import type { Storage } from "../storage/types.js";
import { newUid } from "../uid.js";
import { holderIsGone, ownLockUids } from "./holder.js";
import { lockContent, parseLockContent } from "./layout.js";
import {
  type HeldLock,
  type LockKind,
  type LockSighting,
  type WaitOptions,
  waitForLock,
} from "./lock-wait.js";

export interface ObjectLockOptions extends WaitOptions {
  /** How long a write-then-verify lock waits before reading back (stores without create-only). */
  settleMs?: number | undefined;
}

interface ObjectSighting extends LockSighting {
  modifiedMs: number | undefined;
}

/** uids of locks held by this process right now (shared with the disk locks, and every copy of hubcache). */
const ownUids = ownLockUids();

async function readLockObject(storage: Storage, key: string): Promise<ObjectSighting | undefined> {
  const stat = await storage.stat(key);
  if (!stat) return undefined;
  try {
    const { body } = await storage.read(key);
    const content = (await text(body)).trim();
    const heartbeat = `${stat.modifiedMs ?? ""}/${stat.version ?? ""}`;
    return { content, identity: content, heartbeat, modifiedMs: stat.modifiedMs };
  } catch (error) {
    if (isObjectNotFound(error)) return undefined;
    throw error;
  }
}

/** Delete the lock only if it still holds `content` (never someone else's fresh lock). */
async function removeIfContent(storage: Storage, key: string, content: string): Promise<boolean> {
  const current = await readLockObject(storage, key);
  if (current?.content !== content) return false;
  await storage.delete(key);
  return true;
}

async function tryCreate(storage: Storage, key: string, content: string, settleMs: number): Promise<boolean> {
  if (await probeCreateOnly(storage)) return storage.write(key, content, { ifAbsent: true });
  if (await storage.stat(key)) return false;
  await storage.write(key, content);
  await sleep(settleMs);
  return (await readLockObject(storage, key))?.content === content;
}

export async function acquireObjectLock(
  storage: Storage,
  key: string,
  options: ObjectLockOptions,
): Promise<HeldLock | undefined> {
  const uid = newUid();
  const content = lockContent(uid);
  const settleMs = options.settleMs ?? 500;
  let takenOverFrom: string | undefined;
  const kind: LockKind<ObjectSighting> = {
    pollMs: 500,
    firstReportMs: 5000,
    async tryCreate() {
      if (!(await tryCreate(storage, key, content, settleMs))) return undefined;
      return heldObjectLock(storage, key, uid, content, takenOverFrom, options.timeoutMs);
    },
    look: () => readLockObject(storage, key),
    async judge(seen, now) {
      // A holder on this host that is gone (dead PID, reused PID, or this process without that
      // uid and the lock older than it); without a modification time, only a dead PID counts.
      const owner = parseLockContent(seen.content);
      if (holderIsGone(owner, seen.modifiedMs ?? Number.POSITIVE_INFINITY, ownUids)) return "holder-dead";
      const ancient = seen.modifiedMs !== undefined && now - seen.modifiedMs > 2 * options.timeoutMs;
      return ancient ? "no-progress" : undefined;
    },
    takeOver: (seen) => removeIfContent(storage, key, seen.content),
    async afterTakeover(seen) {
      takenOverFrom = parseLockContent(seen.content).uid || undefined;
    },
  };
  return waitForLock(kind, options);
}

/**
 * Take the lock without waiting (cache management): a lock whose holder on this host is gone, or
 * older than twice `timeoutMs`, is taken over; any other holder keeps it (undefined).
 */
export async function tryAcquireObjectLock(
  storage: Storage,
  key: string,
  options: { timeoutMs: number; settleMs?: number | undefined },
): Promise<HeldLock | undefined> {
  const uid = newUid();
  const content = lockContent(uid);
  for (let attempt = 0; attempt < 2; attempt++) {
    if (await tryCreate(storage, key, content, options.settleMs ?? 500)) {
      return heldObjectLock(storage, key, uid, content, undefined, options.timeoutMs);
    }
    if (attempt > 0) return undefined;
    const seen = await readLockObject(storage, key);
    if (!seen) continue;
    const owner = parseLockContent(seen.content);
    const gone = holderIsGone(owner, seen.modifiedMs ?? Number.POSITIVE_INFINITY, ownUids);
    const ancient = seen.modifiedMs !== undefined && Date.now() - seen.modifiedMs > 2 * options.timeoutMs;
    if (!gone && !ancient) return undefined;
    await removeIfContent(storage, key, seen.content);
  }
  return undefined;
}

/** The content of the lock object `key`, if there is one. */
export async function objectLockContent(storage: Storage, key: string): Promise<string | undefined> {
  return (await readLockObject(storage, key))?.content;
}

function heldObjectLock(
  storage: Storage,
  key: string,
  uid: string,
  content: string,
  takenOverFrom: string | undefined,
  timeoutMs: number,
): HeldLock {
  ownUids.add(uid);
  const everyMs = Math.max(1000, Math.min(timeoutMs / 4, 15_000));
  let lastBeat = Date.now();
  let beating: Promise<void> | undefined;
  let released = false;
  const stillHeld = async (): Promise<boolean> => {
    try {
      return (await readLockObject(storage, key))?.content === content;
    } catch {
      return false;
    }
  };
  return {
    content,
    uid,
    takenOverFrom,
    touch() {
      const now = Date.now();
      if (released || beating || now - lastBeat < everyMs) return false;
      lastBeat = now;
      // Rewrite our lock, only while it is still ours, so waiters see progress.
      beating = (async () => {
        if (await stillHeld()) await storage.write(key, content);
      })()
        .catch(() => undefined)
        .finally(() => (beating = undefined));
      return true;
    },
    stillHeld,
    async release() {
      if (released) return;
      released = true;
      await beating;
      ownUids.delete(uid);
      await removeIfContent(storage, key, content);
    },
  };
}
