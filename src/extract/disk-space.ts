/**
 * Free-space guard for extraction: how much a download may write before the cache's disk gets
 * too full, and a cheap periodic re-check while it writes (other programs fill disks too).
 */
import { promises as fs } from "node:fs";

export interface DiskSpace {
  /** Bytes an unprivileged process may still write. */
  free: number;
  /** Size of the filesystem in bytes. */
  total: number;
}

/** Never reserve more than this by default: on a big disk 1 GiB of headroom is plenty. */
export const MAX_DEFAULT_RESERVE_BYTES = 1 << 30;

/** Free and total bytes of the filesystem holding `dir`, or undefined if the platform cannot say. */
export async function diskSpace(dir: string): Promise<DiskSpace | undefined> {
  try {
    const stats = await fs.statfs(dir);
    return { free: stats.bavail * stats.bsize, total: stats.blocks * stats.bsize };
  } catch {
    return undefined;
  }
}

/**
 * How many bytes to leave free on the cache's disk unless told otherwise: 5 % of the filesystem,
 * at most 1 GiB. Extraction stops before crossing it, so a model never fills the disk.
 */
export function defaultReserveBytes(total: number): number {
  return Math.min(MAX_DEFAULT_RESERVE_BYTES, Math.floor(total * 0.05));
}

/** How many extracted bytes may pass between two free-space checks. */
export function checkIntervalBytes(reserve: number): number {
  return Math.max(64 * 1024, Math.min(64 * 1024 * 1024, Math.floor(reserve / 4)));
}
