/**
 * The download lock on object storage: the object `<hash>.lock` holding "hostname.pid.uid", as
 * TF Hub writes it. Created create-only where the store supports it (S3 `If-None-Match: *`, GCS
 * `ifGenerationMatch: 0`); elsewhere written and read back after a settle delay, which keeps two
 * writers apart in all but a narrow race. The lock only saves bandwidth: the entry is committed by
 * its record (see object-cache.ts), so even two holders at once leave a correct cache.
 *
 * The holder rewrites the lock as a heartbeat. A waiter takes the lock over when it has seen no
 * change for the timeout, when the lock is older than twice the timeout, or at once when the
 * holder is a dead process on this host.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { text } from "node:stream/consumers";
import type { EventListener } from "../events.js";
import { isObjectNotFound } from "../storage/errors.js";
import { probeCreateOnly } from "../storage/transfer.js";
import type { Storage } from "../storage/types.js";
import { holderIsGone } from "./holder.js";
import { lockContent, newUid, parseLockContent } from "./layout.js";
import { ownLockUids } from "./lock.js";

export interface ObjectLockOptions {
  handle: string;
  timeoutMs: number;
  emit: EventListener;
  signal?: AbortSignal | undefined;
  /** Checked while waiting; true stops the wait (the entry appeared). */
  entryReady: () => Promise<boolean>;
  pollMs?: number | undefined;
  /** How long a write-then-verify lock waits before reading back (stores without create-only). */
  settleMs?: number | undefined;
  reportEveryMs?: number | undefined;
}

export interface HeldObjectLock {
  content: string;
  uid: string;
  takenOverFrom: string | undefined;
  release(): Promise<void>;
}

interface Snapshot {
  content: string;
  modifiedMs: number | undefined;
  version: string | undefined;
}

/** uids of locks held by this process right now (shared with the disk locks, and every copy of hubcache). */
const ownUids = ownLockUids();

async function readLock(storage: Storage, key: string): Promise<Snapshot | undefined> {
  const stat = await storage.stat(key);
  if (!stat) return undefined;
  try {
    const { body } = await storage.read(key);
    return { content: (await text(body)).trim(), modifiedMs: stat.modifiedMs, version: stat.version };
  } catch (error) {
    if (isObjectNotFound(error)) return undefined;
    throw error;
  }
}

/** Delete the lock only if it still holds `content` (never someone else's fresh lock). */
async function removeIfContent(storage: Storage, key: string, content: string): Promise<void> {
  const current = await readLock(storage, key);
  if (current?.content === content) await storage.delete(key);
}

async function tryCreate(storage: Storage, key: string, content: string, settleMs: number): Promise<boolean> {
  if (await probeCreateOnly(storage)) return storage.write(key, content, { ifAbsent: true });
  if (await storage.stat(key)) return false;
  await storage.write(key, content);
  await sleep(settleMs);
  return (await readLock(storage, key))?.content === content;
}

export async function acquireObjectLock(
  storage: Storage,
  key: string,
  options: ObjectLockOptions,
): Promise<HeldObjectLock | undefined> {
  const uid = newUid();
  const content = lockContent(uid);
  const pollMs = options.pollMs ?? 500;
  const settleMs = options.settleMs ?? 500;
  const reportEveryMs = options.reportEveryMs ?? 5000;
  const started = Date.now();
  let lastReport = started;
  let last: Snapshot | undefined;
  let lastProgressAt = started;
  let takenOverFrom: string | undefined;

  for (;;) {
    options.signal?.throwIfAborted();
    if (await tryCreate(storage, key, content, settleMs)) {
      return heldLock(storage, key, uid, content, takenOverFrom, options.timeoutMs);
    }
    if (await options.entryReady()) return undefined;
    const snapshot = await readLock(storage, key);
    const now = Date.now();
    if (snapshot === undefined) continue;
    const owner = parseLockContent(snapshot.content);
    // A holder on this host that is gone (dead PID, reused PID, or this process without that
    // uid and the lock older than it); without a modification time, only a dead PID counts.
    const deadHere = holderIsGone(owner, snapshot.modifiedMs ?? Number.POSITIVE_INFINITY, ownUids);
    const progressed =
      last === undefined ||
      last.content !== snapshot.content ||
      last.modifiedMs !== snapshot.modifiedMs ||
      last.version !== snapshot.version;
    if (progressed) lastProgressAt = now;
    last = snapshot;
    const ancient = snapshot.modifiedMs !== undefined && now - snapshot.modifiedMs > 2 * options.timeoutMs;

    if (deadHere || ancient || now - lastProgressAt > options.timeoutMs) {
      options.emit({
        type: "lock-takeover",
        handle: options.handle,
        holder: snapshot.content,
        reason: deadHere ? "holder-dead" : "no-progress",
        staleAfterMs: options.timeoutMs,
      });
      await removeIfContent(storage, key, snapshot.content);
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
        staleAfterMs: options.timeoutMs,
      });
    }
    await sleep(pollMs, undefined, { signal: options.signal });
  }
}

function heldLock(
  storage: Storage,
  key: string,
  uid: string,
  content: string,
  takenOverFrom: string | undefined,
  timeoutMs: number,
): HeldObjectLock {
  ownUids.add(uid);
  // Heartbeat: rewrite our lock (only while it is still ours) so waiters see progress.
  const every = Math.max(1000, Math.min(timeoutMs / 4, 15_000));
  let beating: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    beating = (async () => {
      const current = await readLock(storage, key);
      if (current?.content === content) await storage.write(key, content);
    })().catch(() => undefined);
  }, every);
  timer.unref();
  return {
    content,
    uid,
    takenOverFrom,
    async release() {
      clearInterval(timer);
      await beating;
      ownUids.delete(uid);
      await removeIfContent(storage, key, content);
    },
  };
}
