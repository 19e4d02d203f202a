/** What the bench's parts share: their statistics, the settling between runs, their settings. */
import { execFileSync } from "node:child_process";
import { promises as fs } from "node:fs";
import path from "node:path";
import { setTimeout } from "node:timers/promises";

/** How long the kernel is let settle after a run's files are removed and synced. */
const SETTLE_MS = 300;

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[mid] ?? NaN) : ((sorted[mid - 1] ?? NaN) + (sorted[mid] ?? NaN)) / 2;
}

/** "min-max" of ratios, two decimals. */
export function spread(ratios: number[]): string {
  return `${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)}`;
}

/**
 * Removes a run's files at once, so the next run does not pay for their writeback, then lets the disk
 * and the kernel settle (the removal's journal commit, its discards, freeing 256 MB of page cache),
 * which otherwise fall into the next run at random: with it the pairs' spread halves.
 */
export async function removeAndSettle(dir: string): Promise<void> {
  await fs.rm(dir, { recursive: true, force: true });
  execFileSync("sync");
  await setTimeout(SETTLE_MS);
}

/**
 * Reads every file under `paths` once, so that what a run reads from (the hub's archive, the
 * mirror's copy) is in memory when it starts. This machine's kernel pages out memory that DAMON sees
 * as idle for a minute, page cache included (/sys/kernel/mm/damon: pageout, paddr), and a source
 * read for 0.2 s every few seconds looks idle to it: without this a warm mirror went cold within a
 * row, and its runs were 240 or 600 ms depending on what ran before them.
 */
export async function keepResident(paths: string[]): Promise<void> {
  const buffer = Buffer.allocUnsafe(1 << 20);
  const read = async (file: string): Promise<void> => {
    const stat = await fs.stat(file);
    if (stat.isDirectory()) {
      for (const name of await fs.readdir(file)) await read(path.join(file, name));
      return;
    }
    if (!stat.isFile()) return;
    const handle = await fs.open(file);
    try {
      while ((await handle.read(buffer, 0, buffer.length, null)).bytesRead > 0);
    } finally {
      await handle.close();
    }
  };
  for (const file of paths) await read(file);
}

/** A count from the environment (`name`), or `fallback`; a whole number of at least 1. */
export function countFromEnv(name: string, fallback: number): number {
  const value = Number(process.env[name] ?? fallback);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a whole number of at least 1`);
  return value;
}
