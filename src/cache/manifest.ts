/**
 * hubcache's record of a finished entry, kept beside it as `<hash>.hubcache.json` (Python ignores it).
 * It names the directory it describes by inode, so a record left over from another download never
 * vouches for a directory it did not see being written.
 */
import { readFileSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { errnoCode } from "../errors.js";
import type { TreeFile } from "./fs-util.js";
import type { EntryPaths } from "./layout.js";

export const MANIFEST_VERSION = 1;

export interface Manifest {
  version: typeof MANIFEST_VERSION;
  handle: string;
  /**
   * Identity of the entry directory this record describes. Inode numbers are reused at once on
   * ext4 after a delete, so the directory's birth time is part of it.
   */
  dev: number;
  ino: number;
  birthtimeMs: number;
  createdAt: string;
  bytes: number;
  /** Bytes received from the host (the compressed archive). */
  archiveBytes: number;
  files: TreeFile[];
}

export type EntryState =
  | { state: "hit"; writer: "hubcache" | "other"; manifest: Manifest | undefined }
  | { state: "missing" }
  | { state: "empty" }
  | { state: "incomplete"; reason: string };

function readManifest(file: string): Manifest | undefined {
  try {
    const parsed = JSON.parse(readFileSync(file, "utf8")) as Partial<Manifest>;
    if (parsed.version !== MANIFEST_VERSION || !Array.isArray(parsed.files)) return undefined;
    return parsed as Manifest;
  } catch {
    return undefined;
  }
}

/**
 * Is the entry usable? Synchronous on purpose: a warm hit is a handful of stat calls, and going
 * through the thread pool would cost more than the work. Reads only; writes nothing.
 */
export function inspectEntry(paths: EntryPaths): EntryState {
  let dirStat;
  try {
    dirStat = statSync(paths.dir);
  } catch (error) {
    if (errnoCode(error) === "ENOENT" || errnoCode(error) === "ENOTDIR") return { state: "missing" };
    throw error;
  }
  if (!dirStat.isDirectory()) return { state: "incomplete", reason: "the entry is not a directory" };
  const manifest = readManifest(paths.manifest);
  if (
    manifest &&
    manifest.ino === dirStat.ino &&
    manifest.dev === dirStat.dev &&
    manifest.birthtimeMs === dirStat.birthtimeMs
  ) {
    for (const file of manifest.files) {
      let size: number;
      try {
        size = statSync(path.join(paths.dir, file.path)).size;
      } catch {
        return { state: "incomplete", reason: `${file.path} is missing` };
      }
      if (size !== file.size) {
        return { state: "incomplete", reason: `${file.path} has ${size} bytes, expected ${file.size}` };
      }
    }
    return { state: "hit", writer: "hubcache", manifest };
  }
  // Written by Python tensorflow_hub (or by an interrupted publish): TF Hub's rule, non-empty means cached.
  return readdirSync(paths.dir).length > 0
    ? { state: "hit", writer: "other", manifest: undefined }
    : { state: "empty" };
}
