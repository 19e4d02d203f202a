/**
 * gzip's framing (RFC 1952) around the deflate data, read here so that zlib can inflate raw
 * deflate: with the gzip wrapper, zlib also computes a CRC-32 of everything it inflates, on the
 * inflate thread, which is the slowest stage of a cold resolve (about 9 % of its time, measured).
 * The extraction already computes a CRC-32 of each file for the integrity record; the CRC of the
 * whole tar follows from those (crc32-combine.ts), and is checked against the gzip trailer here.
 *
 * GzipFrame strips the member header and passes the deflate data on, keeping the last bytes it
 * passed: inflate stops at the end of the deflate data (zlib reports how much it consumed), and
 * what follows is the trailer: CRC-32 and length of the tar. Data after the trailer must be zeros
 * (padding); a second gzip member is refused (model archives have one; Python's tarfile reads
 * only the first).
 */
import { Transform, type TransformCallback } from "node:stream";
import { ErrorCode, HubcacheError } from "../errors.js";
import { TRUNCATED_HINT, corruptArchiveError } from "./extract-errors.js";
import { crc32 } from "./crc32.js";

const FHCRC = 0x02;
const FEXTRA = 0x04;
const FNAME = 0x08;
const FCOMMENT = 0x10;
const RESERVED = 0xe0;
/** A header longer than this (names and extra fields are unbounded in RFC 1952) is refused. */
const MAX_HEADER_BYTES = 1 << 20;
/** How many of the last bytes passed on are kept for the trailer and what follows it. */
const TAIL_BYTES = 64 * 1024;
const TRAILER_BYTES = 8;

/** The header's length, "more" when it is not complete yet; throws on a header zlib would refuse. */
export function gzipHeaderLength(bytes: Buffer, handle: string): number | "more" {
  if (bytes.length < 10) return "more";
  if (bytes[0] !== 0x1f || bytes[1] !== 0x8b) throw corruptArchiveError(handle, "no gzip header");
  if (bytes[2] !== 8) throw corruptArchiveError(handle, "a gzip member not compressed with deflate");
  const flags = bytes[3] ?? 0;
  if ((flags & RESERVED) !== 0) throw corruptArchiveError(handle, "a gzip header with reserved flags set");
  let at = 10;
  if (flags & FEXTRA) {
    if (bytes.length < at + 2) return "more";
    at += 2 + bytes.readUInt16LE(at);
  }
  for (const flag of [FNAME, FCOMMENT]) {
    if (!(flags & flag)) continue;
    const end = bytes.indexOf(0, at);
    if (end < 0) return "more";
    at = end + 1;
  }
  if (flags & FHCRC) {
    if (bytes.length < at + 2) return "more";
    if ((crc32(bytes.subarray(0, at)) & 0xffff) !== bytes.readUInt16LE(at)) {
      throw corruptArchiveError(handle, "a gzip header whose CRC does not match");
    }
    at += 2;
  }
  return bytes.length < at ? "more" : at;
}

export class GzipFrame extends Transform {
  /** Deflate bytes passed on so far. */
  private passed = 0;
  private header: Buffer[] | undefined = [];
  private headerBytes = 0;
  /** The last chunks passed on, at least TAIL_BYTES of them when there are that many. */
  private tail: Buffer[] = [];
  private tailBytes = 0;

  constructor(private readonly handle: string) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (this.header === undefined) {
      this.pass(chunk);
      callback();
      return;
    }
    this.header.push(chunk);
    this.headerBytes += chunk.length;
    const head = Buffer.concat(this.header, this.headerBytes);
    let length: number | "more";
    try {
      length = gzipHeaderLength(head, this.handle);
    } catch (error) {
      callback(error as Error);
      return;
    }
    if (length === "more") {
      if (this.headerBytes > MAX_HEADER_BYTES) {
        callback(corruptArchiveError(this.handle, "a gzip header longer than 1 MiB"));
      } else callback();
      return;
    }
    this.header = undefined;
    if (length < head.length) this.pass(head.subarray(length));
    callback();
  }

  override _flush(callback: TransformCallback): void {
    callback(this.header === undefined ? null : truncated(this.handle, "its gzip header"));
  }

  private pass(chunk: Buffer): void {
    this.passed += chunk.length;
    this.tail.push(chunk);
    this.tailBytes += chunk.length;
    while (this.tail.length > 1 && this.tailBytes - (this.tail[0]?.length ?? 0) >= TAIL_BYTES) {
      this.tailBytes -= this.tail.shift()?.length ?? 0;
    }
    this.push(chunk);
  }

  /**
   * After the pipeline: `consumed` deflate bytes were inflated (zlib's bytesWritten) into `size`
   * bytes whose CRC-32 is `crc`. Throws unless the trailer follows and matches.
   */
  verifyEnd(consumed: number, crc: number, size: number): void {
    const after = this.passed - consumed;
    if (after > this.tailBytes) {
      throw corruptArchiveError(this.handle, `${after} bytes after its gzip data (a second gzip member?)`);
    }
    const rest = Buffer.concat(this.tail, this.tailBytes).subarray(this.tailBytes - after);
    if (rest.length < TRAILER_BYTES) throw truncated(this.handle, "the end of its gzip data");
    if (rest.readUInt32LE(0) !== crc >>> 0) {
      throw corruptArchiveError(
        this.handle,
        "gzip data that fails its CRC-32 check (the trailer holds another)",
      );
    }
    if (rest.readUInt32LE(4) !== size % 2 ** 32) {
      throw corruptArchiveError(this.handle, "gzip data whose length does not match its trailer");
    }
    if (rest.subarray(TRAILER_BYTES).some((byte) => byte !== 0)) {
      throw corruptArchiveError(this.handle, "data after its gzip trailer (a second gzip member?)");
    }
  }
}

function truncated(handle: string, what: string): HubcacheError {
  return new HubcacheError(ErrorCode.TRUNCATED, `The archive of ${handle} was cut short (in ${what}).`, {
    handle,
    hint: TRUNCATED_HINT,
  });
}
