/**
 * The files of one cached model as the mirror serves them, whatever holds the cache: a local
 * entry folder (local-files.ts) or an entry on object storage (bucket-files.ts). server.ts,
 * files.ts and archive.ts see only this interface, so every form (one file, a range, the archive)
 * has one code path.
 *
 * A file's validator comes from hubcache's record of the entry when the record vouches for it (its
 * CRC-32 and size: the same for the local and bucket forms of an entry, across restarts and across
 * a copy of the cache), else from what tells a rewrite (size, mtime, the object's version).
 */
import type { Readable } from "node:stream";
import type { RecordFields } from "../cache/record.js";

export interface ModelFile {
  /** "/"-separated, relative to the entry folder. */
  path: string;
  size: number;
  /** When it was written: the record's `createdAt` for a recorded file, else as the store says (ms). */
  modifiedMs: number;
  /**
   * The record's digest of this file (`crc32`: 8 hex digits, "00000000" for an empty file) when
   * the record lists it with this very size; undefined for files no record vouches for.
   */
  recordedCrc32: string | undefined;
  /** For files no record vouches for: what changes when the file is rewritten (mtime, object version). */
  version: string;
}

export interface ModelListing {
  /** Every regular file, sorted by path. */
  files: ModelFile[];
  /** Every directory the form knows of, including empty ones (a bucket has none of its own), sorted. */
  dirs: string[];
}

export interface ModelFiles {
  /** The entry's hash (sha1 of the handle). */
  readonly hash: string;
  /** hubcache's record of the entry, when it vouches for this entry (undefined for Python's). */
  readonly record: RecordFields | undefined;
  /** Where the model is inside the entry: "" or its one wrapping folder ("<dir>/"), as load finds it. */
  modelRoot(): Promise<string>;
  list(): Promise<ModelListing>;
  /**
   * One regular file, by a "/"-separated path relative to the entry that request-path.ts checked;
   * undefined when there is none, or when the path (or a symlink on disk) would leave the entry.
   */
  stat(relative: string): Promise<ModelFile | undefined>;
  /** The bytes `start`..`end` (inclusive) of a file that `stat` or `list` returned; whole without a range. */
  open(file: ModelFile, range?: { start: number; end: number }): Promise<Readable>;
  /**
   * Where files can be read at any offset (a local folder): the file opened for positional reads,
   * which the mirror sends from two buffers it reuses (files.ts) instead of a stream's new buffer per
   * read. Not there for a bucket.
   */
  openPositional?(file: ModelFile): Promise<PositionalFile>;
}

/** A file opened for reads at given offsets. */
export interface PositionalFile {
  /** Reads up to `length` bytes at `position` into the start of `buffer`; 0 at the end of the file. */
  read(buffer: Buffer, length: number, position: number): Promise<number>;
  /** The file's size now (to tell a file that changed while it was sent). */
  size(): Promise<number>;
  close(): Promise<void>;
}

/** A CRC-32 recorded for each file of a record, by path, with its size (empty files have none: 0). */
export function recordedDigests(
  record: RecordFields | undefined,
): Map<string, { size: number; crc32: string }> {
  const digests = new Map<string, { size: number; crc32: string }>();
  for (const file of record?.files ?? []) {
    const crc32 = file.crc32 ?? (file.size === 0 ? "00000000" : undefined);
    if (crc32 !== undefined && /^[0-9a-f]{8}$/.test(crc32)) {
      digests.set(file.path, { size: file.size, crc32 });
    }
  }
  return digests;
}

/**
 * Is `relative` a plain relative path (no empty, `.` or `..` segment, no backslash or NUL)? The
 * request parser already refuses all of these; a bucket key is a plain string, so it is checked
 * again here before it is appended to an entry's prefix.
 */
export function isPlainRelative(relative: string): boolean {
  if (relative === "" || /[\\\0]/.test(relative)) return false;
  return relative.split("/").every((segment) => segment !== "" && segment !== "." && segment !== "..");
}

const SAVED_MODEL_MARKERS = ["saved_model.pb", "saved_model.pbtxt", "tfhub_module.pb"];

/**
 * The model's folder in an entry holding `paths` (files, "/"-separated), as findModelFolder
 * (load/locate.ts) finds it on disk: the entry itself, or its one wrapping folder when the entry
 * has nothing but that folder and the folder holds model.json or a SavedModel.
 */
export function wrappingFolder(paths: readonly string[]): string {
  const top = new Set(paths.map((p) => p.split("/")[0] ?? ""));
  const isModel = (names: Set<string>): boolean =>
    names.has("model.json") || SAVED_MODEL_MARKERS.some((marker) => names.has(marker));
  if (isModel(top)) return "";
  const visible = [...top].filter((name) => !name.startsWith(".") && name !== "__MACOSX");
  const only = visible.length === 1 ? visible[0] : undefined;
  if (only === undefined || !paths.some((p) => p.startsWith(`${only}/`))) return "";
  const inner = new Set(
    paths.filter((p) => p.startsWith(`${only}/`)).map((p) => p.slice(only.length + 1).split("/")[0] ?? ""),
  );
  return isModel(inner) ? `${only}/` : "";
}

/** Sort by path, byte order (the archive's member order). */
export function byPath<T extends { path: string }>(a: T, b: T): number {
  return a.path < b.path ? -1 : a.path > b.path ? 1 : 0;
}
