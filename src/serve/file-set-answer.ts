/**
 * The files form of an archive request (src/extract/file-set.ts): a hubcache client that names
 * FILE_SET_MEDIA_TYPE in Accept gets, instead of a tar, the list of the model's files with the
 * CRC-32s and the upstream archive's SHA-256 from the mirror's record, and then fetches the files
 * itself from `/_files/<hash>/<file>`, in parallel. Only an entry hubcache wrote, whose record has
 * every digest and lists exactly the files the cache holds (in a folder or a bucket), gets it; any
 * other (written by Python, by an older hubcache, a model in a subfolder, 1,000 files or more) is
 * sent as a tar, as to every client.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { handleHash } from "../cache/layout.js";
import { FILE_SET_MEDIA_TYPE, type FileSet } from "../extract/file-set.js";
import { acceptsAny, headerValue, varyOn } from "./headers.js";
import { type ModelFiles, isPlainRelative } from "./model-files.js";

/** Above this many files a tar is faster than one request per file. */
const MAX_FILES_FORM = 1000;

/** Does the request name the files form in Accept (with a q above 0)? */
export function wantsFileSet(req: IncomingMessage): boolean {
  return acceptsAny(headerValue(req, "accept"), [FILE_SET_MEDIA_TYPE]);
}

/**
 * The files form of the cached entry `files` of `handle`, when it can be offered: from a local
 * cache and a bucket cache alike (/_files/ reads either through the same ModelFiles).
 */
export async function entryFileSet(
  req: IncomingMessage,
  handle: string,
  files: ModelFiles,
): Promise<FileSet | undefined> {
  if (!wantsFileSet(req)) return undefined;
  const { record } = files;
  if (!record?.archiveSha256 || record.files.length >= MAX_FILES_FORM) return undefined;
  // /_files/ serves the model's folder: only when that is the entry itself are the paths the same.
  if ((await files.modelRoot()) !== "") return undefined;
  // Exactly the recorded files, each with its recorded size (then it has its CRC-32). A bucket
  // entry's listing is its record's (bucket-files.ts), which a hit check compared with the bucket
  // (at most 10 s before, cached-models.ts); an object gone since is a 404 the client reports.
  const listing = await files.list();
  if (listing.files.length !== record.files.length) return undefined;
  if (listing.files.some((file) => file.recordedCrc32 === undefined)) return undefined;
  // A record's paths are not trusted blindly: a tampered one gets the tar, not a list clients refuse.
  if (![...listing.files.map((file) => file.path), ...listing.dirs].every(isPlainRelative)) return undefined;
  return {
    hubcacheFiles: 1,
    archiveSha256: record.archiveSha256,
    archiveBytes: record.archiveBytes,
    filesBase: `/_files/${handleHash(handle)}`,
    dirs: listing.dirs,
    files: listing.files.map((file) => ({
      path: file.path,
      size: file.size,
      ...(file.size > 0 ? { crc32: file.recordedCrc32 } : {}),
    })),
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
