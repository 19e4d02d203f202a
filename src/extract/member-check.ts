/**
 * Reads the tar stream header by header and hands it to node-tar, refusing the archive at the
 * first member hubcache cannot extract faithfully (see member-rules.ts) before node-tar sees it.
 * It records each member it lets through; node-tar must report exactly those through its filter
 * (same name, type and size: see UnpackRun), and after each write that ends on a member boundary it
 * must have reported all of them (tar parses headers synchronously as it is written to), so none
 * is skipped. It also counts members (maxFiles), and every `pauseEvery` members waits until
 * node-tar has written everything so far (which bounds node-tar's memory).
 */
import path from "node:path";
import { Writable } from "node:stream";
import { DEFAULTS } from "../settings-table.js";
import { ErrorCode, HubcacheError } from "../errors.js";
import { crc32Combine } from "./crc32-combine.js";
import { corruptArchiveError, unsafeArchiveError } from "./extract-errors.js";
import { type Member, PathKinds, checkPaxRecord, memberFromHeader, pathProblem } from "./member-rules.js";
import {
  BLOCK,
  MemberProblem,
  isZeroBlock,
  readHeader,
  readLongName,
  readPaxRecords,
  shown,
} from "./tar-header.js";
import { crc32 } from "./crc32.js";

/** The largest pax or GNU long-name header read (node-tar's own default, passed to it too). */
export const MAX_META_BYTES = 1 << 20;
/** Default limit on the number of files and folders in one archive (the maxFiles option). */
export const DEFAULT_MAX_FILES = DEFAULTS.maxFiles;

/** node-tar's Unpack, as MemberCheck writes to it. */
export interface TarSink {
  write(chunk: Buffer): boolean;
  end(): unknown;
  once(event: "drain", listener: () => void): unknown;
}

export interface MemberCheckOptions {
  handle: string;
  maxFiles: number;
  sink: TarSink;
  /** How many members node-tar has reported so far, or undefined once it has failed. */
  reported: () => number | undefined;
  /** Pause every this many members... */
  pauseEvery: number;
  /** ...until this resolves (called with the number of members let through so far). */
  whenWritten: (members: number) => Promise<void>;
  /**
   * Integrity records: each file's CRC-32 is set here, by its "/"-separated path below the target,
   * computed from the bytes as they pass (no extra stream; a later member of the same name wins).
   */
  crc32ByPath?: Map<string, number> | undefined;
  /** Also compute the CRC-32 of every byte of the tar (gzip's trailer check: gzip-frame.ts). */
  streamCrc?: boolean | undefined;
}

/** Below this size a file's bytes go into the tar's CRC too; above, its CRC is combined in (cheaper). */
const COMBINE_FROM_BYTES = 16 * 1024;

type Phase = "header" | "skip" | "meta" | "end";

export class MemberCheck extends Writable {
  /** Members let through that node-tar has not reported yet, in archive order. */
  readonly expected: Member[] = [];
  members = 0;
  private phase: Phase = "header";
  private offset = 0;
  private partial: Buffer | undefined;
  private skip = 0;
  private metaType = "";
  private metaParts: Buffer[] = [];
  private metaLeft = 0;
  private metaPadding = 0;
  private zeroBlock = false;
  private sincePause = 0;
  private pax: Map<string, Buffer> | undefined;
  private longName: string | undefined;
  /** A problem in an extended header, reported with the member it describes. */
  private deferred: MemberProblem | undefined;
  private readonly kinds = new PathKinds();
  /** The file whose data is passing now (for its CRC-32), the data bytes left, the CRC so far. */
  private crcPath: string | undefined;
  private crcLeft = 0;
  private crcSize = 0;
  private crc = 0;
  /** The CRC-32 of the whole tar so far (with `streamCrc`), and how many bytes it has seen. */
  streamCrc: number | undefined;
  streamBytes = 0;

  constructor(private readonly options: MemberCheckOptions) {
    super();
    if (options.streamCrc) this.streamCrc = 0;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.streamBytes += chunk.length;
    this.scan(chunk, 0, callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (this.pax || this.longName || this.deferred) {
      callback(this.refusal(new MemberProblem("corrupt", "an extended header with no member after it")));
      return;
    }
    this.options.sink.end();
    callback();
  }

  /** Scan `chunk` from `from` and hand it to tar; pauses (and resumes here) at a member boundary. */
  private scan(chunk: Buffer, from: number, callback: (error?: Error | null) => void): void {
    let pos = from;
    try {
      while (pos < chunk.length) {
        if (this.sincePause >= this.options.pauseEvery && this.atBoundary()) {
          this.sincePause = 0;
          const resumeAt = pos;
          this.feed(chunk.subarray(from, pos))
            .then(() => this.options.whenWritten(this.members))
            .then(() => this.scan(chunk, resumeAt, callback), callback);
          return;
        }
        pos = this.step(chunk, pos);
      }
      this.feed(from === 0 ? chunk : chunk.subarray(from)).then(() => callback(), callback);
    } catch (error) {
      callback(error instanceof MemberProblem ? this.refusal(error) : (error as Error));
    }
  }

  private atBoundary(): boolean {
    return (this.phase === "header" && !this.partial) || this.phase === "end";
  }

  /** Hand `bytes` to tar; resolves once it takes more. Throws if tar skipped a member. */
  private feed(bytes: Buffer): Promise<void> {
    const more = bytes.length === 0 || this.options.sink.write(bytes);
    const reported = this.options.reported();
    if (this.atBoundary() && reported !== undefined && reported < this.members) {
      const skipped = this.expected[0]?.path ?? "";
      throw unsafeArchiveError(
        this.options.handle,
        `members tar skips (${this.members - reported}, from ${skipped})`,
      );
    }
    if (more) return Promise.resolve();
    return new Promise((resolve) => this.options.sink.once("drain", resolve));
  }

  /** Consume some bytes of `chunk` at `pos`; returns the new position. */
  private step(chunk: Buffer, pos: number): number {
    switch (this.phase) {
      case "skip": {
        const n = Math.min(this.skip, chunk.length - pos);
        const data = this.crcPath === undefined ? 0 : Math.min(n, this.crcLeft);
        if (data > 0) this.digest(chunk.subarray(pos, pos + data));
        this.addToStream(chunk.subarray(pos + data, pos + n));
        this.skip -= n;
        this.offset += n;
        if (this.skip === 0) this.phase = "header";
        return pos + n;
      }
      case "meta": {
        const next = this.stepMeta(chunk, pos);
        this.addToStream(chunk.subarray(pos, next));
        return next;
      }
      case "end":
        for (let i = pos; i < chunk.length; i++) {
          if (chunk[i] !== 0) throw new MemberProblem("corrupt", "data after the end-of-archive marker");
        }
        this.addToStream(chunk.subarray(pos));
        return chunk.length;
      case "header": {
        // The header's bytes count before the member's data, which block() may start digesting.
        const next = this.stepHeader(chunk, pos);
        this.addToStream(chunk.subarray(pos, next));
        return next;
      }
    }
  }

  private addToStream(bytes: Buffer): void {
    if (this.streamCrc !== undefined && bytes.length > 0) this.streamCrc = crc32(bytes, this.streamCrc);
  }

  private stepHeader(chunk: Buffer, pos: number): number {
    if (this.partial) {
      const need = BLOCK - this.partial.length;
      const part = chunk.subarray(pos, pos + need);
      this.partial = Buffer.concat([this.partial, part]);
      if (this.partial.length < BLOCK) return pos + part.length;
      const block = this.partial;
      this.partial = undefined;
      this.block(block);
      return pos + part.length;
    }
    if (chunk.length - pos < BLOCK) {
      this.partial = Buffer.from(chunk.subarray(pos));
      return chunk.length;
    }
    this.block(chunk.subarray(pos, pos + BLOCK));
    return pos + BLOCK;
  }

  private stepMeta(chunk: Buffer, pos: number): number {
    const n = Math.min(this.metaLeft, chunk.length - pos);
    this.metaParts.push(Buffer.from(chunk.subarray(pos, pos + n)));
    this.metaLeft -= n;
    this.offset += n;
    if (this.metaLeft === 0) {
      const body = Buffer.concat(this.metaParts);
      this.metaParts = [];
      this.readMeta(body);
      this.skip = this.metaPadding;
      this.phase = this.skip > 0 ? "skip" : "header";
    }
    return pos + n;
  }

  /** One 512-byte header block. */
  private block(block: Buffer): void {
    const at = this.offset;
    this.offset += BLOCK;
    if (isZeroBlock(block)) {
      if (this.zeroBlock) this.phase = "end";
      this.zeroBlock = true;
      return;
    }
    const header = readHeader(block, at);
    if (this.zeroBlock) {
      // node-tar reads on after one zero block; other tars stop there: they would disagree.
      throw new MemberProblem(
        "corrupt",
        `a zero block in the middle of the archive, before ${shown(header.name)}`,
      );
    }
    if (header.type === "x" || header.type === "g" || header.type === "L") {
      this.startMeta(header.type, header.size);
      return;
    }
    if (header.type === "K") {
      throw new MemberProblem("unsafe", `a GNU long link name (only links have one) (${header.name})`);
    }
    this.member(memberFromHeader(header, this.pax, this.longName));
  }

  private startMeta(type: string, size: number): void {
    const padding = (BLOCK - (size % BLOCK)) % BLOCK;
    if (size > MAX_META_BYTES) {
      this.deferred ??= new MemberProblem(
        "unsafe",
        `an extended header of ${size} bytes, over the ${MAX_META_BYTES}-byte limit (it names the next member; tar would drop it)`,
      );
      this.skip = size + padding;
      this.phase = this.skip > 0 ? "skip" : "header";
      return;
    }
    this.metaType = type;
    this.metaLeft = size;
    this.metaPadding = padding;
    this.phase = size > 0 ? "meta" : "header";
    if (size === 0) this.readMeta(Buffer.alloc(0));
  }

  /** A complete pax ('x', 'g') or GNU long-name ('L') body. */
  private readMeta(body: Buffer): void {
    try {
      if (this.metaType === "L") {
        this.longName = readLongName(body);
        return;
      }
      const records = readPaxRecords(body);
      if (this.metaType === "g") {
        for (const [key, value] of records) checkPaxRecord(key, value, true, "a global header");
        return;
      }
      this.pax = new Map([...(this.pax ?? []), ...records]);
    } catch (error) {
      if (!(error instanceof MemberProblem)) throw error;
      this.deferred ??= error;
    }
  }

  /** A file or folder header, with the extended headers before it applied. */
  private member(member: Member): void {
    const pax = this.pax;
    this.pax = undefined;
    this.longName = undefined;
    if (this.deferred) {
      const { kind, message } = this.deferred;
      throw new MemberProblem(kind, `${message} (${member.path})`);
    }
    for (const [key, value] of pax ?? []) checkPaxRecord(key, value, false, member.path);
    const problem = pathProblem(member) ?? this.kinds.check(member);
    if (problem) throw new MemberProblem("unsafe", problem);
    if (++this.members > this.options.maxFiles) {
      throw tooManyFiles(this.options.handle, this.options.maxFiles);
    }
    this.sincePause++;
    this.expected.push(member);
    // Empty files need no digest (and 100,000 of them would fill the map for nothing).
    if (member.kind === "file" && member.size > 0 && this.options.crc32ByPath) this.startDigest(member);
    this.skip = member.size + ((BLOCK - (member.size % BLOCK)) % BLOCK);
    this.phase = this.skip > 0 ? "skip" : "header";
  }

  private startDigest(member: Member): void {
    this.crcPath = path.posix.normalize(member.path).replace(/^(\.\/)+/, "");
    this.crcLeft = member.size;
    this.crcSize = member.size;
    this.crc = 0;
    if (member.size === 0) this.digest(Buffer.alloc(0));
  }

  private digest(data: Buffer): void {
    this.crc = crc32(data, this.crc);
    const small = this.crcSize < COMBINE_FROM_BYTES;
    if (small) this.addToStream(data);
    this.crcLeft -= data.length;
    if (this.crcLeft > 0 || this.crcPath === undefined) return;
    this.options.crc32ByPath?.set(this.crcPath, this.crc);
    if (!small && this.streamCrc !== undefined) {
      this.streamCrc = crc32Combine(this.streamCrc, this.crc, this.crcSize);
    }
    this.crcPath = undefined;
  }

  private refusal(problem: MemberProblem): HubcacheError {
    return problem.kind === "unsafe"
      ? unsafeArchiveError(this.options.handle, problem.message)
      : corruptArchiveError(this.options.handle, problem.message);
  }
}

export function tooManyFiles(handle: string, limit: number): HubcacheError {
  return new HubcacheError(
    ErrorCode.TOO_LARGE,
    `${handle} holds more than ${limit} files and folders, the limit (maxFiles); extraction was stopped.`,
    {
      handle,
      hint: "Raise the limit (HUBCACHE_MAX_FILES, --max-files or the maxFiles option) if you trust this model; a model rarely has more than a few thousand files.",
    },
  );
}
