/**
 * The files form of an archive request (src/extract/file-set.ts): a hubcache client that names
 * FILE_SET_MEDIA_TYPE in Accept gets, instead of a tar, the list of the model's files with the
 * CRC-32s and the upstream archive's SHA-256 from the mirror's record, and then fetches the files
 * itself from `/_files/<hash>/<file>`, in parallel. Only an entry hubcache wrote, whose record has
 * every digest and lists exactly the files on disk, gets it; any other (written by Python, by an
 * older hubcache, a model in a subfolder, 1,000 files or more) is sent as a tar, as to every client.
 */
import { promises as fs } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import path from "node:path";
import { inspectDiskEntry } from "../cache/disk-store.js";
import { entryPaths, handleHash } from "../cache/layout.js";
import { FILE_SET_MEDIA_TYPE, type FileSet } from "../extract/file-set.js";
import { findModelFolder } from "../load/locate.js";
import { isRemoteLocation } from "../storage/location.js";
import { varyOn } from "./policy.js";

/** Above this many files a tar is faster than one request per file. */
const MAX_FILES_FORM = 1000;

/** Does the request name the files form in Accept (with a q above 0)? */
export function wantsFileSet(req: IncomingMessage): boolean {
  const accept = String(req.headers.accept ?? "");
  return accept.split(",").some((part) => {
    const [type = "", ...params] = part.trim().toLowerCase().split(";");
    const q = params.find((p) => p.trim().startsWith("q="));
    return type.trim() === FILE_SET_MEDIA_TYPE && (q === undefined || Number(q.trim().slice(2)) > 0);
  });
}

/** Every folder and file below `root` ("/"-separated), or undefined if it holds anything else. */
async function walk(root: string): Promise<{ dirs: string[]; files: Map<string, number> } | undefined> {
  const dirs: string[] = [];
  const files = new Map<string, number>();
  const visit = async (dir: string, prefix: string): Promise<boolean> => {
    for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
      const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) {
        dirs.push(rel);
        if (!(await visit(full, rel))) return false;
      } else if (entry.isFile()) files.set(rel, (await fs.stat(full)).size);
      else return false;
    }
    return true;
  };
  return (await visit(root, "")) ? { dirs, files } : undefined;
}

/** The files form of the cached entry of `handle` (at `location`), when it can be offered. */
export async function entryFileSet(
  req: IncomingMessage,
  cacheDir: string,
  handle: string,
  location: string,
): Promise<FileSet | undefined> {
  if (!wantsFileSet(req) || isRemoteLocation(cacheDir)) return undefined;
  const paths = entryPaths(cacheDir, handle);
  const state = inspectDiskEntry(paths);
  const record = state.state === "hit" ? state.record : undefined;
  if (!record?.archiveSha256 || record.files.length >= MAX_FILES_FORM) return undefined;
  if (record.files.some((file) => file.size > 0 && file.crc32 === undefined)) return undefined;
  // /_files/ serves the model's folder: only when that is the entry itself are the paths the same.
  if (path.resolve(location) !== path.resolve(paths.dir)) return undefined;
  if (path.resolve((await findModelFolder(location)).dir) !== path.resolve(paths.dir)) return undefined;
  const tree = await walk(paths.dir);
  if (!tree || tree.files.size !== record.files.length) return undefined;
  if (record.files.some((file) => tree.files.get(file.path) !== file.size)) return undefined;
  return {
    hubcacheFiles: 1,
    archiveSha256: record.archiveSha256,
    archiveBytes: record.archiveBytes,
    filesBase: `/_files/${handleHash(handle)}`,
    dirs: tree.dirs,
    files: record.files.map((file) => ({ path: file.path, size: file.size, crc32: file.crc32 })),
  };
}

/** Answer with the files form. */
export function sendFileSet(
  req: IncomingMessage,
  res: ServerResponse,
  fileSet: FileSet,
  headers: Record<string, string>,
): void {
  const body = `${JSON.stringify(fileSet)}\n`;
  res.writeHead(200, {
    ...headers,
    "content-type": FILE_SET_MEDIA_TYPE,
    "content-length": String(Buffer.byteLength(body)),
    vary: varyOn(headers, "Accept", "Accept-Encoding"),
  });
  res.end(req.method === "HEAD" ? undefined : body);
}
