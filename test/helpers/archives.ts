/**
 * Hand-built tar archives for the hostile cases: each header is encoded by node-tar's Header (so
 * checksums and fields are real), and the bytes around it are laid out by hand, so a test can
 * make exactly the archive an attacker would.
 */
import zlib from "node:zlib";
import * as tar from "tar";

export type EntryType =
  "File" | "Directory" | "SymbolicLink" | "Link" | "CharacterDevice" | "BlockDevice" | "FIFO";

export interface EntrySpec {
  path: string;
  type?: EntryType;
  content?: Buffer | string;
  linkpath?: string;
  mode?: number;
}

function pad(length: number): Buffer {
  return Buffer.alloc((512 - (length % 512)) % 512);
}

/** One entry: a 512-byte header, then the content padded to a block. */
export function tarEntry(spec: EntrySpec): Buffer {
  const type = spec.type ?? "File";
  const content = spec.content === undefined ? Buffer.alloc(0) : Buffer.from(spec.content);
  const header = new tar.Header({
    path: spec.path,
    type,
    size: type === "File" ? content.length : 0,
    mode: spec.mode ?? (type === "Directory" ? 0o755 : 0o644),
    mtime: new Date("2024-01-01T00:00:00Z"),
    uid: 0,
    gid: 0,
    ...(spec.linkpath === undefined ? {} : { linkpath: spec.linkpath }),
    ...(type === "CharacterDevice" || type === "BlockDevice" ? { devmaj: 1, devmin: 3 } : {}),
  });
  const block = Buffer.alloc(512);
  // encode() returns true when the path needs a pax header; tests keep paths short, so fail loudly.
  if (header.encode(block)) throw new Error(`path too long for a plain header: ${spec.path}`);
  if (type !== "File" || content.length === 0) return block;
  return Buffer.concat([block, content, pad(content.length)]);
}

/** A pax extended header that overrides the next entry's path (how long names are stored). */
export function paxPath(entryPath: string): Buffer {
  return new tar.Pax({ path: entryPath }).encode();
}

/** tar's end-of-archive marker: two zero blocks. */
export const END_OF_ARCHIVE = Buffer.alloc(1024);

/** A whole tar: entries, then the end-of-archive marker (unless `end: false`). */
export function tarOf(entries: (EntrySpec | Buffer)[], options: { end?: boolean } = {}): Buffer {
  const parts = entries.map((entry) => (Buffer.isBuffer(entry) ? entry : tarEntry(entry)));
  if (options.end !== false) parts.push(END_OF_ARCHIVE);
  return Buffer.concat(parts);
}

export function gzip(data: Buffer): Buffer {
  return zlib.gzipSync(data);
}

/** A small benign model tree as entries (folders first, as `tar -C dir .` writes them). */
export function benignEntries(): EntrySpec[] {
  return [
    { path: "./", type: "Directory" },
    { path: "./saved_model.pb", content: Buffer.alloc(3000, 7) },
    { path: "./variables/", type: "Directory" },
    { path: "./variables/variables.index", content: "index" },
    { path: "./variables/variables.data-00000-of-00001", content: Buffer.alloc(5000, 1) },
  ];
}
