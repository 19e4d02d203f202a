/**
 * Is the process named in a lock ("hostname.pid.uid") still there? Only a holder on this host can be
 * proven gone; a holder elsewhere is judged by its progress alone (see lock.ts).
 */
import { readFileSync } from "node:fs";
import os from "node:os";
import { errnoCode } from "../errors.js";
import type { LockOwner } from "./layout.js";

/**
 * uids of the locks this process holds right now (disk and object-storage locks alike), shared by
 * every copy of hubcache loaded in this JavaScript realm (a lock naming our PID but none of these
 * uids is a leftover, see holderIsGone).
 */
export function ownLockUids(): Set<string> {
  const key = Symbol.for("hubcache.ownLockUids");
  const store = globalThis as unknown as Record<symbol, Set<string> | undefined>;
  return (store[key] ??= new Set<string>());
}

/** /proc/<pid>/stat's start time has 10 ms ticks, but /proc/stat's boot time only whole seconds. */
const START_TIME_SLACK_MS = 2000;

/** When this process started (wall clock, ms). */
const ownStartMs = Date.now() - process.uptime() * 1000;

let bootTimeMs: number | undefined;

interface ProcInfo {
  state: string;
  startMs: number | undefined;
}

/** Linux only: a process's state letter and start time, from /proc. undefined when unknown. */
function procInfo(pid: number): ProcInfo | undefined {
  if (process.platform !== "linux") return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // "pid (comm) state ..." where comm may hold spaces and parentheses: split after the last ")".
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (bootTimeMs === undefined) {
      const match = /^btime (\d+)$/m.exec(readFileSync("/proc/stat", "utf8"));
      bootTimeMs = match?.[1] === undefined ? Number.NaN : Number(match[1]) * 1000;
    }
    // Field 22 (starttime) is index 19 here; USER_HZ is 100 on every Linux architecture Node runs on.
    const ticks = Number(fields[19]);
    const startMs =
      Number.isFinite(bootTimeMs) && Number.isFinite(ticks) ? bootTimeMs + ticks * 10 : undefined;
    return { state: fields[0] ?? "", startMs };
  } catch {
    return undefined;
  }
}

/**
 * Is `pid` a live process on this host? EPERM means it exists but belongs to another user. A zombie
 * (killed, not yet reaped by its parent) answers signal 0 but is dead.
 */
export function isProcessAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false; // 0 and -1 would signal whole groups
  try {
    process.kill(pid, 0);
  } catch (error) {
    if (errnoCode(error) !== "EPERM") return false;
  }
  const info = procInfo(pid);
  return !(info && (info.state === "Z" || info.state === "X"));
}

/**
 * True when the lock's holder is provably gone: it names this host, and its process is dead, or the
 * PID now belongs to a process that started after the lock was last touched (PID reuse, e.g. after a
 * container restart), or it names this very process but none of its live locks.
 * `lockMtimeMs` is the lock file's mtime (the holder's last heartbeat).
 */
export function holderIsGone(owner: LockOwner, lockMtimeMs: number, ownUids: ReadonlySet<string>): boolean {
  if (owner.pid === undefined || owner.host !== os.hostname()) return false;
  if (owner.pid === process.pid) {
    // Another thread of this process may hold it (workers do not share `ownUids`): only a lock older
    // than this process is certainly a leftover of an earlier process that had the same PID.
    return !ownUids.has(owner.uid) && lockMtimeMs < ownStartMs;
  }
  if (!isProcessAlive(owner.pid)) return true;
  const startMs = procInfo(owner.pid)?.startMs;
  return startMs !== undefined && startMs > lockMtimeMs + START_TIME_SLACK_MS;
}
