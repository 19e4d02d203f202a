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

// ---- A raw tar writer: any typeflag, name bytes, size field, magic or pax record, byte by byte. ----

export interface RawSpec {
  /** The 100-byte name field (a Buffer may hold any bytes, NULs included). */
  name: string | Buffer;
  /** The typeflag character: "0" file, "5" folder, "S" sparse, "x" pax, "L" GNU long name... */
  type: string;
  /** The data after the header (padded to a block). */
  content?: Buffer | string;
  /** The size field's value (default: the content's length). */
  size?: number;
  /** The raw 12-byte size field, as is (overrides `size`). */
  sizeField?: Buffer;
  /** The 155-byte ustar prefix field. */
  prefix?: string | Buffer;
  /** "ustar" (POSIX, the default), "gnu" (old GNU: "ustar  \0") or "none" (v7). */
  magic?: "ustar" | "gnu" | "none";
}

function putField(block: Buffer, offset: number, length: number, value: string | Buffer): void {
  const bytes = Buffer.isBuffer(value) ? value : Buffer.from(value, "utf8");
  if (bytes.length > length) throw new Error(`field too long (${bytes.length} > ${length})`);
  bytes.copy(block, offset);
}

function octal(value: number, length: number): string {
  return `${value.toString(8).padStart(length - 1, "0")}\0`;
}

/** One 512-byte header with a correct checksum. */
export function rawHeader(spec: RawSpec, contentLength = 0): Buffer {
  const block = Buffer.alloc(512);
  putField(block, 0, 100, spec.name);
  putField(block, 100, 8, octal(spec.type === "5" ? 0o755 : 0o644, 8));
  putField(block, 108, 8, octal(0, 8));
  putField(block, 116, 8, octal(0, 8));
  putField(block, 124, 12, spec.sizeField ?? octal(spec.size ?? contentLength, 12));
  putField(block, 136, 12, octal(1704067200, 12));
  block.write(spec.type, 156, 1, "latin1");
  const magic = spec.magic ?? "ustar";
  if (magic === "ustar") block.write("ustar\u000000", 257, 8, "latin1");
  if (magic === "gnu") block.write("ustar  \0", 257, 8, "latin1");
  if (spec.prefix !== undefined) putField(block, 345, 155, spec.prefix);
  let sum = 8 * 0x20;
  for (let i = 0; i < 512; i++) if (i < 148 || i >= 156) sum += block[i] ?? 0;
  block.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, 8, "latin1");
  return block;
}

/** A header and its content, padded to a block. */
export function rawEntry(spec: RawSpec): Buffer {
  const content = spec.content === undefined ? Buffer.alloc(0) : Buffer.from(spec.content);
  return Buffer.concat([rawHeader(spec, content.length), content, pad(content.length)]);
}

/** pax records, each "%d %s=%s\n" with the length counting itself. */
export function paxBody(records: [string, string | Buffer][]): Buffer {
  return Buffer.concat(
    records.map(([key, value]) => {
      const tail = Buffer.concat([Buffer.from(` ${key}=`), Buffer.from(value), Buffer.from("\n")]);
      let length = tail.length + 1;
      while (String(length).length + tail.length > length) length++;
      return Buffer.concat([Buffer.from(String(length)), tail]);
    }),
  );
}

/** A pax extended header ('x', or 'g' when `global`) holding `records`, or a raw `body`. */
export function paxHeader(
  records: [string, string | Buffer][] | Buffer,
  options: { global?: boolean } = {},
): Buffer {
  const body = Buffer.isBuffer(records) ? records : paxBody(records);
  return rawEntry({ name: "PaxHeader/x", type: options.global ? "g" : "x", content: body });
}

/** A GNU long-name header ('L'): the name (any bytes) and its trailing NUL. */
export function gnuLongName(name: string | Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(name), Buffer.alloc(1)]);
  return rawEntry({ name: "././@LongLink", type: "L", content: body, magic: "gnu" });
}
