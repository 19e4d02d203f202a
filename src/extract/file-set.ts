/**
 * The files form of a model: instead of a tar, a `hubcache serve` mirror may answer an archive
 * request with a list of the model's files (the FileSet below, from the mirror's own record), and
 * the client then fetches each file by itself, in parallel, and checks it against the list's
 * CRC-32. This module is the list's format and every check a tar member gets, applied to the list
 * before anything is written: plain names inside the target (member-rules.ts), no file turned into
 * a folder, no duplicates, maxFiles, maxExtractBytes. Nothing here touches the network.
 */
import { ErrorCode, HubcacheError } from "../errors.js";
import { corruptArchiveError, unsafeArchiveError } from "./extract-errors.js";
import { tooLargeError } from "./extract-guard.js";
import { tooManyFiles } from "./member-check.js";
import { PathKinds, components, pathProblem } from "./member-rules.js";

/** The media type a client names in Accept to get the files form, and the mirror answers with. */
export const FILE_SET_MEDIA_TYPE = "application/vnd.hubcache.files+json";
/** A list longer than this is not read (a model's list is a few KB; 100,000 files are ~10 MB). */
export const MAX_FILE_SET_BYTES = 16 << 20;

export interface FileSetFile {
  /** "/"-separated, relative, no "." or ".." parts. */
  path: string;
  size: number;
  /** CRC-32, 8 lower-case hex digits; absent for an empty file. */
  crc32?: string | undefined;
}

/** What the mirror sends (JSON). */
export interface FileSet {
  hubcacheFiles: 1;
  /** The upstream archive's SHA-256 and size, as the mirror's record holds them. */
  archiveSha256: string;
  archiveBytes: number;
  /** Where the files are on the mirror: `/_files/<sha1 of the handle>`, then `/<file path>`. */
  filesBase: string;
  /** Every folder, parents before children (empty ones included). */
  dirs: string[];
  files: FileSetFile[];
}

export interface FileSetLimits {
  handle: string;
  maxFiles: number;
  maxExtractBytes?: number | undefined;
}

/** A checked list: what to make, and how many bytes that is. */
export interface FileSetPlan {
  fileSet: FileSet;
  totalBytes: number;
}

const HEX64 = /^[0-9a-f]{64}$/;
const HEX8 = /^[0-9a-f]{8}$/;

function listError(handle: string, why: string): HubcacheError {
  return new HubcacheError(
    ErrorCode.UNEXPECTED_RESPONSE,
    `The mirror's list of the files of ${handle} is not valid: ${why}.`,
    { handle, hint: "The mirror sent a broken answer; try again, or update hubcache on the mirror." },
  );
}

const isSize = (value: unknown): value is number => Number.isSafeInteger(value) && (value as number) >= 0;

/** Parse the mirror's answer; throws ERR_HUBCACHE_UNEXPECTED_RESPONSE when it is not a FileSet. */
export function parseFileSet(body: Buffer, handle: string): FileSet {
  let parsed: Partial<FileSet>;
  try {
    parsed = JSON.parse(body.toString("utf8")) as Partial<FileSet>;
  } catch {
    throw listError(handle, "it is not JSON");
  }
  const { archiveSha256, archiveBytes, filesBase, dirs, files } = parsed;
  if (parsed.hubcacheFiles !== 1) throw listError(handle, "it is not version 1");
  if (typeof archiveSha256 !== "string" || !HEX64.test(archiveSha256)) {
    throw listError(handle, "no archiveSha256");
  }
  if (!isSize(archiveBytes)) throw listError(handle, "no archiveBytes");
  // Exactly the mirror's own /_files/<sha1> path: anything else could send the client elsewhere
  // (URL parsing drops tabs and newlines, so "/\t/evil.example" would be another host).
  if (typeof filesBase !== "string" || !/^\/_files\/[0-9a-f]{40}$/.test(filesBase)) {
    throw listError(handle, "no filesBase of the form /_files/<sha1>");
  }
  if (!Array.isArray(dirs) || !dirs.every((dir) => typeof dir === "string")) {
    throw listError(handle, "no dirs");
  }
  if (!Array.isArray(files)) throw listError(handle, "no files");
  for (const file of files as unknown[]) {
    const { path, size, crc32 } = (file ?? {}) as Partial<FileSetFile>;
    if (typeof path !== "string" || !isSize(size)) throw listError(handle, "a file without path or size");
    const crcOk = crc32 === undefined ? size === 0 : typeof crc32 === "string" && HEX8.test(crc32);
    if (!crcOk) throw listError(handle, `no CRC-32 for ${JSON.stringify(path)}`);
  }
  return { hubcacheFiles: 1, archiveSha256, archiveBytes, filesBase, dirs, files };
}

/** A name in its one spelling: "a/b", never "./a", "a//b", "a/" or with a backslash or NUL. */
function plainName(name: string): boolean {
  return name !== "" && !/[\\\0]/.test(name) && components(name).join("/") === name;
}

/**
 * Apply the archive rules to the list: every name plain and safe, no folder that is also a file,
 * no name twice, at most maxFiles files and folders, at most maxExtractBytes bytes.
 */
export function planFileSet(fileSet: FileSet, limits: FileSetLimits): FileSetPlan {
  const { handle } = limits;
  if (fileSet.dirs.length + fileSet.files.length > limits.maxFiles) {
    throw tooManyFiles(handle, limits.maxFiles);
  }
  const kinds = new PathKinds();
  const seen = new Set<string>();
  const check = (name: string, kind: "file" | "dir", size: number): void => {
    const member = { path: name, kind, size };
    const problem =
      pathProblem(member) ??
      (plainName(name) ? undefined : `a name in another spelling than a/b (${JSON.stringify(name)})`) ??
      kinds.check(member);
    if (problem) throw unsafeArchiveError(handle, problem);
    if (seen.has(name)) throw corruptArchiveError(handle, `${JSON.stringify(name)} twice`);
    seen.add(name);
  };
  for (const dir of fileSet.dirs) check(dir, "dir", 0);
  let totalBytes = 0;
  for (const file of fileSet.files) {
    check(file.path, "file", file.size);
    totalBytes += file.size;
  }
  if (limits.maxExtractBytes !== undefined && totalBytes > limits.maxExtractBytes) {
    throw tooLargeError(handle, limits.maxExtractBytes);
  }
  return { fileSet, totalBytes };
}
