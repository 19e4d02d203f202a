/**
 * `mkdir -p` that always ends. Node 20's `fs.mkdir(dir, { recursive: true })` loops forever, at
 * full CPU, on paths whose parent cannot hold new entries but answers ENOENT (`/proc/x/y`, some
 * FUSE and network mounts). This walks up one level at a time instead, so it makes at most one
 * attempt per path component, and it says what is in the way when a component is a file.
 */
import { promises as fs } from "node:fs";
import path from "node:path";
import { errnoCode } from "./errors.js";

/** A path component exists but is not a directory. */
export class NotADirectoryError extends Error {
  override readonly name = "NotADirectoryError";
  readonly code = "ENOTDIR";
  constructor(readonly path: string) {
    super(`${path} exists and is not a directory`);
  }
}

/**
 * Make `dir` and its missing parents. Resolves when `dir` is a directory; rejects with the
 * filesystem's error (EACCES, EROFS, ENOENT for a parent that cannot hold folders...), or with
 * NotADirectoryError when `dir` or a parent is a file.
 */
export async function makeDirs(dir: string): Promise<void> {
  const target = path.resolve(dir);
  try {
    await fs.mkdir(target);
    return;
  } catch (error) {
    const code = errnoCode(error);
    if (code === "EEXIST") return checkIsDirectory(target, error);
    if (code === "ENOTDIR") throw new NotADirectoryError(await firstFileAncestor(target));
    if (code !== "ENOENT") throw error;
  }
  const parent = path.dirname(target);
  if (parent === target) throw new Error(`cannot create the root directory ${target}`);
  await makeDirs(parent);
  // The parent exists now: one more try, whose error (if any) is final.
  try {
    await fs.mkdir(target);
  } catch (error) {
    if (errnoCode(error) === "EEXIST") return checkIsDirectory(target, error);
    throw error;
  }
}

async function checkIsDirectory(target: string, cause: unknown): Promise<void> {
  const stat = await fs.stat(target).catch(() => undefined);
  if (stat === undefined) throw cause; // a dangling symlink, or gone again
  if (!stat.isDirectory()) throw new NotADirectoryError(target);
}

/** The nearest ancestor of `target` that exists and is not a directory (for the message). */
async function firstFileAncestor(target: string): Promise<string> {
  for (let dir = path.dirname(target); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const stat = await fs.stat(dir).catch(() => undefined);
    if (stat !== undefined && !stat.isDirectory()) return dir;
  }
  return target;
}
