/** A local directory as a tree of files: its listing, its byte size, its newest mtime, its removal. */
import { promises as fs } from "node:fs";
import path from "node:path";
import { errnoCode } from "../errors.js";
import type { TreeFile } from "../storage/transfer.js";

export type { TreeFile };

export async function removeTree(target: string): Promise<void> {
  await fs.rm(target, { recursive: true, force: true, maxRetries: 3 });
}

/** All regular files below `root`, sorted by path. */
export async function listDirTree(root: string): Promise<TreeFile[]> {
  const files: TreeFile[] = [];
  const walk = async (dir: string, prefix: string): Promise<void> => {
    const entries = await fs.readdir(dir, { withFileTypes: true });
    for (const entry of entries) {
      const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) await walk(full, rel);
      else if (entry.isFile()) files.push({ path: rel, size: (await fs.stat(full)).size });
    }
  };
  await walk(root, "");
  return files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** Total size in bytes of the files below `root` (0 if it does not exist), as TF Hub measures progress. */
export async function treeSize(root: string): Promise<number> {
  try {
    return (await listDirTree(root)).reduce((sum, file) => sum + file.size, 0);
  } catch (error) {
    if (errnoCode(error) === "ENOENT") return 0;
    throw error;
  }
}

/**
 * The newest modification time (ms) of `root` and everything below it, or undefined if it does not
 * exist. A download in progress keeps this fresh; an abandoned one lets it age.
 */
export async function newestMtime(root: string): Promise<number | undefined> {
  let newest: number | undefined;
  const visit = async (target: string): Promise<void> => {
    let stat;
    try {
      stat = await fs.lstat(target);
    } catch (error) {
      if (errnoCode(error) === "ENOENT") return;
      throw error;
    }
    newest = Math.max(newest ?? 0, stat.mtimeMs);
    if (!stat.isDirectory()) return;
    let names: string[];
    try {
      names = await fs.readdir(target);
    } catch (error) {
      if (errnoCode(error) === "ENOENT") return;
      throw error;
    }
    for (const name of names) await visit(path.join(target, name));
  };
  await visit(root);
  return newest;
}
