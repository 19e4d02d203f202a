/**
 * TEST-ONLY hook for hubcache's crash tests: freeze a process at a named step of a download so a
 * test can SIGKILL it at that exact instant. Not part of the API; do not use it.
 *
 *   HUBCACHE_TEST_PAUSE_AT=<point>      one of PAUSE_POINTS
 *   HUBCACHE_TEST_PAUSE_FILE=<path>     written (holding the point's name) when the point is reached;
 *                                       the process stays frozen until the file is deleted
 *
 * Frozen means blocked: no callback, timer or heartbeat runs, as in a process stopped by the kernel.
 * When HUBCACHE_TEST_PAUSE_AT is unset (always, outside these tests) a call costs one environment
 * lookup, made only at a few steps of a download; cache hits never get here.
 */
import { existsSync, renameSync, writeFileSync } from "node:fs";

export const PAUSE_POINTS = [
  /** At the first heartbeat of the lock: bytes are arriving, the temp dir is partly written. */
  "during-download",
  /** The archive is fully extracted in the temp dir; nothing else written. */
  "after-extract",
  /** The descriptor's temp file is written; nothing is in place. */
  "during-descriptor-write",
  /** The descriptor and hubcache's record are written under their temp names; the entry is not published. */
  "before-rename",
  /** The entry directory is published; its descriptor and record are still under their temp names. */
  "after-rename",
  /** Everything is published; the lock is still held. */
  "before-release",
] as const;

export type PausePoint = (typeof PAUSE_POINTS)[number];

/** Steps of a removal (rm, prune), for cache management's crash tests; not steps of a download. */
export const REMOVE_PAUSE_POINTS = [
  /** The entry is renamed to its `.trash` name; its descriptor, record and files are still there. */
  "after-remove-rename",
] as const;

export function testPause(point: PausePoint | (typeof REMOVE_PAUSE_POINTS)[number]): void {
  if (process.env.HUBCACHE_TEST_PAUSE_AT !== point) return;
  const file = process.env.HUBCACHE_TEST_PAUSE_FILE;
  if (!file) return;
  writeFileSync(`${file}.partial`, point);
  renameSync(`${file}.partial`, file);
  const cell = new Int32Array(new SharedArrayBuffer(4));
  while (existsSync(file)) Atomics.wait(cell, 0, 0, 20);
}
