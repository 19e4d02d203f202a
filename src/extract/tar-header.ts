/**
 * The raw fields of a tar header and the records of pax and GNU long-name headers, read exactly as
 * the bytes say. node-tar reads the archive; these readers let hubcache check that every member is
 * one it can extract faithfully (node-tar silently cuts names at a NUL, drops records it does not
 * understand, and skips types it does not support).
 */

export const BLOCK = 512;

/** Something about a header that refuses the archive: "corrupt" (damaged) or "unsafe" (not supported). */
export class MemberProblem extends Error {
  constructor(
    readonly kind: "corrupt" | "unsafe",
    message: string,
  ) {
    super(message);
  }
}

export interface RawHeader {
  /** The name as stored: the ustar prefix and name fields joined. */
  name: string;
  /** The typeflag character ("0", "5", "x"...; "\0" for old files). */
  type: string;
  size: number;
}

/** A name or value as it may be shown in a message: quoted, control characters escaped. */
export function shown(text: string): string {
  return JSON.stringify(text);
}

export function isZeroBlock(block: Buffer): boolean {
  for (let i = 0; i < BLOCK; i++) if (block[i] !== 0) return false;
  return true;
}

function checksumOk(block: Buffer): boolean {
  const stored = parseInt(block.toString("latin1", 148, 156).replace(/\0.*$/, "").trim(), 8);
  let sum = 8 * 0x20;
  for (let i = 0; i < 148; i++) sum += block[i] ?? 0;
  for (let i = 156; i < BLOCK; i++) sum += block[i] ?? 0;
  return sum === stored;
}

/** Bytes as UTF-8, refusing bytes that are not (node-tar would replace them with U+FFFD). */
export function utf8(bytes: Buffer, what: string): string {
  const text = bytes.toString("utf8");
  if (text.includes("\uFFFD") && !Buffer.from(text, "utf8").equals(bytes)) {
    throw new MemberProblem("unsafe", `${what} ${shown(bytes.toString("latin1"))} that is not valid UTF-8`);
  }
  return text;
}

/** A NUL-terminated text field; anything but NULs after the first NUL is a name tar would cut. */
function textField(block: Buffer, start: number, length: number, what: string): string {
  const bytes = block.subarray(start, start + length);
  const nul = bytes.indexOf(0);
  if (nul === -1) return utf8(bytes, what);
  for (let i = nul; i < length; i++) {
    if (bytes[i] !== 0) {
      const whole = bytes.toString("latin1").replace(/\0+$/, "");
      throw new MemberProblem("unsafe", `${what} with a NUL byte in it (${shown(whole)})`);
    }
  }
  return utf8(bytes.subarray(0, nul), what);
}

/** The size field: octal digits, or GNU's base-256 for big sizes. */
function sizeField(block: Buffer, name: string): number {
  const field = block.subarray(124, 136);
  const first = field[0] ?? 0;
  if (first & 0x80) {
    if (first === 0xff) throw new MemberProblem("corrupt", `a negative size (member ${shown(name)})`);
    let size = first & 0x7f;
    for (let i = 1; i < field.length; i++) size = size * 256 + (field[i] ?? 0);
    if (Number.isSafeInteger(size)) return size;
  } else {
    const digits = field.toString("latin1").replace(/\0.*$/s, "").trim();
    if (/^[0-7]+$/.test(digits)) return parseInt(digits, 8);
  }
  throw new MemberProblem("corrupt", `an unreadable size field (member ${shown(name)})`);
}

/** Read one header block (not a zero block). */
export function readHeader(block: Buffer, offset: number): RawHeader {
  if (!checksumOk(block)) {
    const raw = block.toString("latin1", 0, 100).replace(/\0.*$/s, "");
    throw new MemberProblem("corrupt", `a damaged header (bad checksum) at byte ${offset} (${shown(raw)})`);
  }
  const name = textField(block, 0, 100, "a name");
  const type = String.fromCharCode(block[156] ?? 0);
  let full = name;
  if (block.toString("latin1", 257, 265) === "ustar\u000000") {
    // node-tar reads 155 prefix bytes when the last is set, else 130 (star keeps times after them).
    const prefix = textField(block, 345, block[475] !== 0 ? 155 : 130, "a name prefix");
    if (prefix) full = `${prefix}/${name}`;
  }
  return { name: full, type, size: sizeField(block, full) };
}

/** A GNU long name ('L'): the name, then NULs only. */
export function readLongName(body: Buffer): string {
  const nul = body.indexOf(0);
  const end = nul === -1 ? body.length : nul;
  for (let i = end; i < body.length; i++) {
    if (body[i] !== 0) {
      throw new MemberProblem(
        "unsafe",
        `a long name with a NUL byte in it (${shown(body.toString("latin1").replace(/\0+$/, ""))})`,
      );
    }
  }
  return utf8(body.subarray(0, end), "a long name");
}

/** pax records ("%d %s=%s\n", the length counting itself), keyed by name; throws on a malformed one. */
export function readPaxRecords(body: Buffer): Map<string, Buffer> {
  const records = new Map<string, Buffer>();
  let pos = 0;
  while (pos < body.length) {
    if (body[pos] === 0 && body.subarray(pos).every((byte) => byte === 0)) break;
    const space = body.indexOf(0x20, pos);
    const lengthText = space === -1 ? "" : body.toString("latin1", pos, space);
    const length = /^[1-9][0-9]*$/.test(lengthText) ? Number(lengthText) : NaN;
    const end = pos + length;
    const equals = space === -1 ? -1 : body.indexOf(0x3d, space);
    if (!(end <= body.length) || body[end - 1] !== 0x0a || equals === -1 || equals >= end) {
      throw new MemberProblem("corrupt", `a malformed pax record at byte ${pos} of an extended header`);
    }
    records.set(body.toString("utf8", space + 1, equals), body.subarray(equals + 1, end - 1));
    pos = end;
  }
  return records;
}
