/**
 * A model in a local cache entry folder, as ModelFiles. A file is served only from inside the
 * entry folder, also through symlinks (fileInside in files.ts). The record vouches for the files
 * when the disk store says the entry is hubcache's and whole (inspectDiskEntry: the record names
 * this folder, or the cache was copied and every size matches).
 */
import { constants, promises as fs } from "node:fs";
import path from "node:path";
import { inspectDiskEntry } from "../cache/disk-store.js";
import { entryPathsForHash } from "../cache/layout.js";
import { ErrorCode, HubcacheError, errnoCode } from "../errors.js";
import { findModelFolder } from "../load/locate.js";
import { fileInside } from "./files.js";
import {
  type ModelFile,
  type ModelFiles,
  type ModelListing,
  byPath,
  recordedDigests,
} from "./model-files.js";

interface LocalFile extends ModelFile {
  /** The real path on disk (symlinks resolved, inside the entry). */
  real: string;
}

/** The model in the entry folder `dir` (`<cacheDir>/<hash>`, as resolve returned it). */
export function localModelFiles(dir: string, hash: string): ModelFiles {
  const state =
    path.basename(dir) === hash ? inspectDiskEntry(entryPathsForHash(path.dirname(dir), hash)) : undefined;
  const record = state?.state === "hit" ? state.record : undefined;
  const digests = recordedDigests(record);
  const createdMs = record ? Date.parse(record.createdAt) : Number.NaN;

  const describe = (relative: string, real: string, size: number, mtimeMs: number): LocalFile => {
    const recorded = digests.get(relative);
    const vouched = recorded !== undefined && recorded.size === size && Number.isFinite(createdMs);
    return {
      path: relative,
      size,
      modifiedMs: vouched ? createdMs : mtimeMs,
      recordedCrc32: vouched ? recorded.crc32 : undefined,
      version: Math.floor(mtimeMs).toString(16),
      real,
    };
  };

  return {
    hash,
    record,
    modelRoot: async () => {
      const found = (await findModelFolder(dir)).dir;
      return found === dir ? "" : `${path.relative(dir, found).split(path.sep).join("/")}/`;
    },
    stat: async (relative) => {
      const real = await fileInside(dir, relative);
      if (real === undefined) return undefined;
      const stat = await fs.stat(real);
      return stat.isFile() ? describe(relative, real, stat.size, stat.mtimeMs) : undefined;
    },
    list: async () => listLocal(dir, describe),
    open: async (file, range) =>
      (await openInside(file as LocalFile)).createReadStream({ highWaterMark: 1 << 20, ...(range ?? {}) }),
    openPositional: async (file) => {
      const handle = await openInside(file as LocalFile);
      return {
        read: async (buffer, length, position) => (await handle.read(buffer, 0, length, position)).bytesRead,
        size: async () => (await handle.stat()).size,
        close: () => handle.close(),
      };
    },
  };
}

/** Opens a file that `stat` or `list` found; O_NOFOLLOW: one swapped for a symlink since is not opened. */
async function openInside(file: LocalFile): Promise<fs.FileHandle> {
  return fs.open(file.real, constants.O_RDONLY | constants.O_NOFOLLOW).catch((error: unknown) => {
    const code = errnoCode(error);
    if (code !== "ENOENT" && code !== "ELOOP") throw error;
    throw new HubcacheError(ErrorCode.NOT_FOUND, `${file.path} is no longer in the entry`, {
      cause: error,
    });
  });
}

/** Every regular file and directory below `dir` (symlinks are not followed or listed). */
async function listLocal(
  dir: string,
  describe: (relative: string, real: string, size: number, mtimeMs: number) => LocalFile,
): Promise<ModelListing> {
  const files: LocalFile[] = [];
  const dirs: string[] = [];
  const walk = async (folder: string, prefix: string): Promise<void> => {
    let entries;
    try {
      entries = await fs.readdir(folder, { withFileTypes: true });
    } catch (error) {
      if (errnoCode(error) === "ENOENT" && prefix !== "") return;
      throw error;
    }
    for (const entry of entries) {
      const relative = prefix + entry.name;
      const full = path.join(folder, entry.name);
      if (entry.isDirectory()) {
        dirs.push(relative);
        await walk(full, `${relative}/`);
      } else if (entry.isFile()) {
        const stat = await fs.lstat(full);
        files.push(describe(relative, full, stat.size, stat.mtimeMs));
      }
    }
  };
  await walk(dir, "");
  return { files: files.sort(byPath), dirs: dirs.sort() };
}
