/**
 * What every download lock shares, on a local disk (disk-lock.ts) and on object storage
 * (object-lock.ts): the held lock's interface, the heartbeat policy, and the one loop that waits for
 * a lock held by someone else and takes it over when its holder is gone or stalled. Each lock kind
 * plugs in how it creates, reads and removes its lock and how it sees its holder's progress.
 *
 * The heartbeat policy (one, for both kinds; docs/concurrency.md says the same):
 * - A lock is refreshed by progress, never by a free-running timer. Its holder calls `touch()`
 *   when bytes arrive (the producer's `touch`, about ten times a second; each kind throttles what it
 *   writes) and, about once a second, while it waits on purpose: a backoff or a host's Retry-After
 *   (the lease's `waiting()`), or another lock (the two-tier cache waiting on the shared tier). So a
 *   holder frozen or hung mid-download stops refreshing its lock and is taken over after the stale
 *   window, while a live holder that honours the host, or waits its turn, is not.
 * - A waiter counts as progress any change of the lock (its content, identity or modification
 *   time), and what the kind measures besides (the byte size of a disk lock's temp dir, which is how
 *   Python's waiters see progress). It takes the lock over after `timeoutMs` without progress, or at
 *   once when the kind proves the holder gone (a dead process on this host).
 */
import { setTimeout as sleep } from "node:timers/promises";
import { abortedError } from "../errors.js";
import type { EventListener } from "../events.js";

/** A lock this process holds. */
export interface HeldLock {
  /** "hostname.pid.uid", as written in the lock. */
  content: string;
  uid: string;
  /** The uid of the holder this lock was taken over from, if any (its leftovers may go). */
  takenOverFrom: string | undefined;
  /** Mark progress (the heartbeat, see the module comment); throttled. True when it wrote one. */
  touch(): boolean;
  /** Is the lock still ours? (False once someone judged us stale and took it over.) Never throws. */
  stillHeld(): Promise<boolean>;
  /** Remove the lock if it is still ours. */
  release(): Promise<void>;
}

export type TakeoverReason = "holder-dead" | "no-progress";

export interface WaitOptions {
  handle: string;
  /** Take over a lock that shows no progress for this long. */
  timeoutMs: number;
  emit: EventListener;
  signal?: AbortSignal | undefined;
  /** Checked on each poll while waiting; true stops the wait (the entry appeared). */
  entryReady: () => boolean | Promise<boolean>;
  /** Called on each poll while waiting (e.g. to keep an outer lock fresh: waiting is deliberate). */
  whileWaiting?: (() => void) | undefined;
  /** How often to look at a held lock. */
  pollMs?: number | undefined;
  /** Least time between two `lock-wait` events. */
  reportEveryMs?: number | undefined;
}

/** One look at a lock someone else holds. */
export interface LockSighting {
  /** The lock's content ("" when it cannot be read). */
  content: string;
  /** Changes when the lock is replaced (a new holder): content plus inode, or content alone. */
  identity: string;
  /** Changes with the holder's heartbeat: an mtime, a version. */
  heartbeat: string;
}

/** How one kind of lock is created, seen and taken over. */
export interface LockKind<S extends LockSighting> {
  /** Create the lock exclusively: the held lock, or undefined when someone else holds it. */
  tryCreate(): Promise<HeldLock | undefined>;
  /** The lock as it is now, or undefined when it is gone. */
  look(): Promise<S | undefined>;
  /** A costlier sign of progress, measured a few times per window (a temp dir's bytes). */
  measure?(seen: S): Promise<number>;
  /** A reason to take over at once, whatever the progress (the holder is provably gone). */
  judge(seen: S, now: number): Promise<TakeoverReason | undefined>;
  /** Remove the lock if it is still `seen`; true if this call removed it. */
  takeOver(seen: S, reason: TakeoverReason): Promise<boolean>;
  /** After this call took the lock over: remove what the old holder left. */
  afterTakeover?(seen: S): Promise<void>;
  /** The first poll delay, and the first report, come this soon. */
  pollMs: number;
  firstReportMs: number;
}

/** What a waiter remembers of the holder it watches. */
interface Watch {
  identity: string;
  heartbeat: string;
  measured: number;
  measuredAt: number;
  progressAt: number;
}

/**
 * Take the lock, waiting for (or taking over from) another holder. Resolves to undefined when the
 * entry became ready while waiting: the caller then uses it without producing it.
 */
export async function waitForLock<S extends LockSighting>(
  kind: LockKind<S>,
  options: WaitOptions,
): Promise<HeldLock | undefined> {
  const pollMs = options.pollMs ?? kind.pollMs;
  const reportEveryMs = options.reportEveryMs ?? 5000;
  const started = Date.now();
  let nextReport = started + Math.min(kind.firstReportMs, reportEveryMs);
  let watch: Watch | undefined;
  for (;;) {
    throwIfAborted(options);
    const held = await kind.tryCreate();
    if (held) return held;
    for (;;) {
      if (await options.entryReady()) return undefined;
      const seen = await kind.look();
      if (!seen) break; // released: try to create it
      const now = Date.now();
      watch = await observe(kind, seen, watch, now, options.timeoutMs, pollMs);
      const reason =
        (await kind.judge(seen, now)) ??
        (now - watch.progressAt > options.timeoutMs ? "no-progress" : undefined);
      if (reason) {
        if (await kind.takeOver(seen, reason)) {
          emitTakeover(options, seen, reason);
          await kind.afterTakeover?.(seen);
        }
        watch = undefined;
        break;
      }
      if (now >= nextReport) {
        nextReport = now + reportEveryMs;
        emitWait(options, seen, now - started);
      }
      options.whileWaiting?.();
      await pause(pollMs, options);
    }
  }
}

/** Update what we know of the holder: any change of its lock, or of what the kind measures, is progress. */
async function observe<S extends LockSighting>(
  kind: LockKind<S>,
  seen: S,
  watch: Watch | undefined,
  now: number,
  timeoutMs: number,
  pollMs: number,
): Promise<Watch> {
  if (!watch || watch.identity !== seen.identity) {
    const measured = (await kind.measure?.(seen)) ?? 0;
    return { identity: seen.identity, heartbeat: seen.heartbeat, measured, measuredAt: now, progressAt: now };
  }
  if (seen.heartbeat !== watch.heartbeat) {
    watch.heartbeat = seen.heartbeat; // the holder's heartbeat
    watch.progressAt = now;
    return watch;
  }
  // Measuring may walk a temp dir: do it a few times per window, and before judging a holder stale.
  const measureEveryMs = Math.min(Math.max(timeoutMs / 4, pollMs), 5000);
  if (kind.measure && (now - watch.measuredAt >= measureEveryMs || now - watch.progressAt > timeoutMs)) {
    const measured = await kind.measure(seen);
    watch.measuredAt = now;
    if (measured !== watch.measured) {
      watch.measured = measured;
      watch.progressAt = now;
    }
  }
  return watch;
}

function emitTakeover(options: WaitOptions, seen: LockSighting, reason: TakeoverReason): void {
  options.emit({
    type: "lock-takeover",
    handle: options.handle,
    holder: seen.content,
    reason,
    staleAfterMs: options.timeoutMs,
  });
}

function emitWait(options: WaitOptions, seen: LockSighting, waitedMs: number): void {
  options.emit({
    type: "lock-wait",
    handle: options.handle,
    holder: seen.content,
    waitedMs,
    staleAfterMs: options.timeoutMs,
  });
}

function throwIfAborted(options: WaitOptions): void {
  if (options.signal?.aborted) {
    throw abortedError(
      options.handle,
      `Waiting for the download lock of ${options.handle}`,
      options.signal.reason,
    );
  }
}

async function pause(ms: number, options: WaitOptions): Promise<void> {
  try {
    await sleep(ms, undefined, { signal: options.signal });
  } catch (error) {
    throw abortedError(options.handle, `Waiting for the download lock of ${options.handle}`, error);
  }
}
