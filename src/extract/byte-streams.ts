/** Small pass-through stages of the extraction pipeline: counting bytes, and batching them for gunzip. */
import type { Hash } from "node:crypto";
import { Transform, type TransformCallback } from "node:stream";

/**
 * Joins network reads (~64 KiB each) into blocks of up to `size` bytes before gunzip, which makes
 * one thread-pool round trip per input chunk: 10-15 % faster end to end (measured, npm run bench).
 * Bytes are never held back longer than `maxWaitMs`, so a slow link still shows progress.
 */
export class Coalescer extends Transform {
  private parts: Buffer[] = [];
  private pending = 0;
  private timer: NodeJS.Timeout | undefined;
  constructor(
    private readonly size: number,
    private readonly maxWaitMs: number,
  ) {
    super();
  }
  private release(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.pending === 0) return;
    const block =
      this.parts.length === 1 ? (this.parts[0] as Buffer) : Buffer.concat(this.parts, this.pending);
    this.parts = [];
    this.pending = 0;
    this.push(block);
  }
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.parts.push(chunk);
    this.pending += chunk.length;
    if (this.pending >= this.size) this.release();
    else this.timer ??= setTimeout(() => this.release(), this.maxWaitMs);
    callback();
  }
  override _flush(callback: TransformCallback): void {
    this.release();
    callback();
  }
  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (this.timer) clearTimeout(this.timer);
    callback(error);
  }
}

/** Passes bytes through and reports the running total. */
export class ByteCounter extends Transform {
  bytes = 0;
  constructor(
    private readonly onChunk: (total: number) => void,
    /** Integrity records: the hash of the bytes as received. */
    private readonly hash?: Hash | undefined,
  ) {
    super();
  }
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    this.hash?.update(chunk);
    this.onChunk(this.bytes);
    callback(null, chunk);
  }
}

/**
 * Hands each chunk on in a later turn of the event loop. Placed after gunzip, it lets zlib start
 * inflating the next block on the thread pool before the main thread parses and writes this one
 * (without it, zlib's output is consumed synchronously and the two never overlap).
 */
export class Handoff extends Transform {
  constructor(highWaterMark: number) {
    super({ highWaterMark });
  }
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    setImmediate(() => callback(null, chunk));
  }
}
