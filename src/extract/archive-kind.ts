/**
 * What a download body is, decided from its first bytes (never from headers): gzip, plain tar, or
 * something else (a sign-in page, a JSON error), described for the error message.
 */
import { Readable, Transform, type TransformCallback } from "node:stream";
import { ErrorCode, HubcacheError } from "../errors.js";

export type ArchiveKind = "gzip" | "tar";
const SNIFF_BYTES = 512;

export function detectKind(head: Buffer): ArchiveKind | undefined {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return "gzip";
  if (looksLikeTar(head)) return "tar";
  return undefined;
}

/** A tar header: a valid header checksum and a name (old v7 tars have no "ustar" magic). */
function looksLikeTar(block: Buffer): boolean {
  if (block.length < 512) return false;
  return validTarChecksum(block);
}

function validTarChecksum(block: Buffer): boolean {
  const stored = parseInt(block.toString("latin1", 148, 156).replace(/\0.*$/, "").trim(), 8);
  if (!Number.isFinite(stored)) return false;
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : (block[i] ?? 0);
  return sum === stored && block.subarray(0, 100).some((byte) => byte !== 0);
}

/** "text/html, starting with "<!DOCTYPE html>..."" or "an empty body", for error messages. */
export function describeBody(head: Buffer, contentType: string | undefined): string {
  const type = contentType ? `Content-Type ${contentType}` : "no Content-Type";
  if (head.length === 0) return `an empty body (${type})`;
  const text = head
    .subarray(0, 80)
    .toString("utf8")
    .replace(/[^\x20-\x7e]+/g, " ")
    .trim();
  return `${head.length >= SNIFF_BYTES ? "" : `${head.length} bytes, `}${type}, starting with "${text}"`;
}

const NOT_AN_ARCHIVE_HINT =
  "Check that the handle is a model URL (a sign-in, consent or error page is not a model), that the model is public or your credentials are set, and that no proxy or captive portal rewrites the answer.";

/** The body is not a gzip'd or plain tar. */
export function notAnArchiveError(
  handle: string,
  head: Buffer,
  contentType: string | undefined,
): HubcacheError {
  return new HubcacheError(
    ErrorCode.NOT_AN_ARCHIVE,
    `${handle} did not answer with a model archive (gzip'd or plain tar): it sent ${describeBody(head, contentType)}.`,
    { handle, hint: NOT_AN_ARCHIVE_HINT },
  );
}

/** The body is gzip, but what it unpacks to is not a tar. */
export function notATarError(handle: string, inner: Buffer): HubcacheError {
  return new HubcacheError(
    ErrorCode.NOT_AN_ARCHIVE,
    `${handle} sent gzip data that does not hold a tar archive (it unpacks to ${describeBody(inner, undefined)}).`,
    { handle, hint: NOT_AN_ARCHIVE_HINT },
  );
}

export interface Sniffed {
  head: Buffer;
  /** The whole body again: the head, then the rest. */
  stream: Readable;
}

/**
 * Read the first bytes, then hand back a stream that gives them again followed by the rest: the
 * source itself, with the head put back (no async iteration, which copies and awaits per chunk).
 */
export async function sniff(source: Readable): Promise<Sniffed> {
  const chunks: Buffer[] = [];
  let length = 0;
  const joined = (): Buffer => (chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks));
  return new Promise<Sniffed>((resolve, reject) => {
    const settle = (outcome: () => void): void => {
      source.off("readable", onReadable);
      source.off("end", onEnd);
      source.off("error", onError);
      outcome();
    };
    const onError = (error: Error): void => settle(() => reject(error));
    const onEnd = (): void => {
      const head = joined();
      settle(() => resolve({ head, stream: Readable.from(head.length > 0 ? [head] : []) }));
    };
    const onReadable = (): void => {
      for (let chunk: unknown; length < SNIFF_BYTES && (chunk = source.read()) !== null;) {
        const bytes = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array);
        chunks.push(bytes);
        length += bytes.length;
      }
      if (length < SNIFF_BYTES) return;
      const head = joined();
      // Put back at once, in this turn: a source that has ended would otherwise emit 'end' first.
      source.unshift(head);
      settle(() => resolve({ head, stream: source }));
    };
    source.on("readable", onReadable);
    source.once("end", onEnd);
    source.once("error", onError);
  });
}

/** After gunzip: the first 512 bytes must be a tar header, else the gzip held something else. */
export class TarHeadCheck extends Transform {
  private head: Buffer[] = [];
  private headBytes = 0;
  private checked = false;
  constructor(private readonly fail: (head: Buffer) => Error) {
    super();
  }
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (this.checked) {
      callback(null, chunk);
      return;
    }
    this.head.push(chunk);
    this.headBytes += chunk.length;
    if (this.headBytes < 512) {
      callback();
      return;
    }
    this.release(callback);
  }
  override _flush(callback: TransformCallback): void {
    if (this.checked) callback();
    else this.release(callback);
  }
  private release(callback: TransformCallback): void {
    const all = Buffer.concat(this.head);
    this.head = [];
    this.checked = true;
    const endOfArchive = all.length >= 512 && all.subarray(0, 512).every((byte) => byte === 0);
    if (!looksLikeTar(all) && !endOfArchive) {
      callback(this.fail(all));
      return;
    }
    callback(null, all);
  }
}
