/**
 * hubcache's record of a finished entry, `<hash>.hubcache.json` beside it (Python ignores it): what
 * was extracted (files and sizes) and when. On disk it names the directory it describes by inode;
 * on object storage it is the entry's commit marker and names the upload it was published from.
 * The JSON format and field names are fixed: existing caches, and other copies of hubcache, read it.
 * Fields may be added (older copies ignore them; `version` changes only when one must not): issue 11
 * added each file's `crc32` and the archive's `archiveSha256`, both optional (older records lack them).
 *
 * The handle in a record (and in the descriptor) is written redacted: a record must never hold a
 * credential or a signed URL's query. Nothing compares it with the handle being resolved (the
 * entry's name, sha1 of the exact handle, is the key).
 */
import { redactUrl } from "../redact.js";
import type { TreeFile } from "../storage/transfer.js";

export const RECORD_VERSION = 1;

/** What every record holds, on disk and on object storage. */
export interface RecordFields {
  version: typeof RECORD_VERSION;
  /** The handle, redacted (see the module comment). */
  handle: string;
  createdAt: string;
  bytes: number;
  /** Bytes received from the host (the compressed archive). */
  archiveBytes: number;
  files: RecordFile[];
  /**
   * SHA-256 (hex) of the model's archive; absent in older records and copies. Downloaded as an
   * archive: of the bytes as received. Through a `hubcache serve` mirror that handed out the files
   * (the files form, src/extract/file-set.ts): the upstream archive's, from the mirror's record, as
   * is `archiveBytes`; the files' CRC-32s are then the client's own, each checked equal to the
   * mirror's, so the record reads as if the client had downloaded the archive itself.
   */
  archiveSha256?: string | undefined;
}

/** A file of the entry: its path and size, and (newer records) its CRC-32, 8 hex digits. */
export interface RecordFile extends TreeFile {
  crc32?: string | undefined;
}

/** The record of an entry on a local disk. */
export interface DiskRecord extends RecordFields {
  /**
   * Identity of the entry directory this record describes. Inode numbers are reused at once on
   * ext4 after a delete, so the directory's birth time is part of it.
   */
  dev: number;
  ino: number;
  birthtimeMs: number;
  /**
   * Identity of the record file itself, as written (absent in records of older versions). A record
   * whose own identity changed was copied with its cache (`cp -a`, rsync, a CI cache restore).
   */
  recordFile?: { dev: number; ino: number; birthtimeMs: number };
}

/** The record of an entry on object storage. */
export interface ObjectRecord extends RecordFields {
  /** The upload this entry was published from (`<hash>.<uid>.tmp/`). */
  uid: string;
}

/** What a finished download produced, from which a store builds its record. */
export interface Produced {
  handle: string;
  files: TreeFile[];
  bytes: number;
  archiveBytes: number;
  /** CRC-32 of each file (by path, "/"-separated), computed while extracting, when the source did. */
  crc32ByPath?: ReadonlyMap<string, number> | undefined;
  archiveSha256?: string | undefined;
}

/** A CRC-32 as a record writes it: 8 lower-case hex digits. */
export function crc32Hex(crc: number): string {
  return (crc >>> 0).toString(16).padStart(8, "0");
}

/** The fields both kinds of record share, for `produced`, now. */
export function recordFields(produced: Produced): RecordFields {
  return {
    version: RECORD_VERSION,
    handle: redactUrl(produced.handle),
    createdAt: new Date().toISOString(),
    bytes: produced.bytes,
    archiveBytes: produced.archiveBytes,
    // In place (an archive may hold 100,000 files): each file gains its CRC-32, empty ones none
    // (an empty file of the right size has the right bytes).
    files: produced.files.map((file) => {
      const crc = file.size === 0 ? undefined : produced.crc32ByPath?.get(file.path);
      return crc === undefined ? file : Object.assign(file, { crc32: crc32Hex(crc) });
    }),
    ...(produced.archiveSha256 === undefined ? {} : { archiveSha256: produced.archiveSha256 }),
  };
}

/** Parse a record's JSON; undefined when it is not one this version of hubcache understands. */
export function parseRecord<T extends RecordFields>(raw: string): T | undefined {
  try {
    const parsed = JSON.parse(raw) as Partial<T>;
    if (parsed.version !== RECORD_VERSION || !Array.isArray(parsed.files)) return undefined;
    return parsed as T;
  } catch {
    return undefined;
  }
}
