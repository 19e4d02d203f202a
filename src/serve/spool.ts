/**
 * A cold download's archive bytes, as the upstream sent them, teed into a spool file that any number
 * of mirror clients follow while the download runs (late joiners from byte 0):
 * - the download never waits for a reader: it writes the file at its own pace; each reader reads the
 *   file at its client's pace (one chunk in memory per reader), so a slow client holds nothing;
 * - the last HOLD_BACK_BYTES are only given out once the entry is published: a client never sees a
 *   whole archive (gzip trailer, tar end marker) that the mirror did not accept;
 * - a failed download, or one that starts over from byte 0, fails the spool: every reader throws,
 *   and the server cuts its connection (never a short body that looks whole);
 * - the file (a unique name in the mirror's own temp area) is unlinked as soon as it is open, and
 *   closed once the download is settled and its last reader is gone.
 */
import { promises as fs } from "node:fs";
import path from "node:path";
import { Transform, type TransformCallback } from "node:stream";
import { newUid } from "../uid.js";

/** What is withheld until the entry is published: more than a tar's end padding, its last header. */
export const HOLD_BACK_BYTES = 64 * 1024;
const READ_CHUNK_BYTES = 256 * 1024;
/** Enough to tell a gzip stream (2 bytes) or a tar (its first header's magic at 257) apart. */
const SNIFF_BYTES = 512;

export type SpoolKind = "gzip" | "tar";

type State = "writing" | "received" | "published" | "failed";

export class Spool {
  private size = 0;
  private state: State = "writing";
  private failure: Error | undefined;
  private refs = 1; // the writer's
  private closed = false;
  private wake: (() => void)[] = [];
  private file = "";
  private readonly handle: Promise<fs.FileHandle>;

  constructor(
    /** The mirror's own temp area (never the cache dir, whose names are entries'). */
    dir: string,
    /** The archive's size, when the upstream said. */
    readonly totalBytes: number | undefined,
  ) {
    const file = path.join(dir, `hubcache-spool-${newUid()}.part`);
    const opened = fs.open(file, "wx+").then(async (handle) => {
      // Unlinked at once where the platform allows it (the open handle keeps the bytes): a killed
      // mirror leaves nothing behind. Elsewhere it is removed when the last reader is done.
      this.file = await fs.unlink(file).then(
        () => "",
        () => file,
      );
      return handle;
    });
    opened.catch((error: unknown) => this.fail(error));
    this.handle = opened;
  }

  /** A tee for the download: passes every chunk on at once, and writes it to the file. */
  tee(): Transform {
    return new SpoolTee(this);
  }

  /** Internal to the tee: one chunk received (written to the file; never throws). */
  async received(chunk: Buffer): Promise<void> {
    if (this.state !== "writing") return;
    await this.append(chunk).catch((error: unknown) => this.fail(error));
  }

  /** Internal to the tee: the body ended, or stopped early (`error`). */
  bodyEnded(error: Error | undefined): void {
    if (this.state !== "writing") return;
    if (error) this.fail(error);
    else this.settleTo("received");
  }

  private async append(chunk: Buffer): Promise<void> {
    const handle = await this.handle;
    let written = 0;
    while (written < chunk.length) {
      const { bytesWritten } = await handle.write(
        chunk,
        written,
        chunk.length - written,
        this.size + written,
      );
      written += bytesWritten;
    }
    this.size += chunk.length;
    this.notify();
  }

  /** The entry was published: readers may read to the end. Anything else fails the readers. */
  publish(): void {
    if (this.state === "received") this.settleTo("published");
    else this.fail(new Error("the archive was published without its whole body in the spool"));
  }

  /** Cut every reader (the download failed, or starts over from byte 0). */
  fail(error: unknown): void {
    if (this.state === "failed" || this.state === "published") return;
    this.failure = error instanceof Error ? error : new Error(String(error));
    this.settleTo("failed");
  }

  /** The writer is done with the spool (the download is settled). */
  release(): void {
    if (this.state === "writing" || this.state === "received") this.fail(new Error("the download ended"));
    this.unref();
  }

  /** A reader from byte 0, or undefined when the spool is gone or failed. */
  open(): SpoolReader | undefined {
    if (this.closed || this.state === "failed") return undefined;
    this.refs++;
    return new SpoolReader(this);
  }

  /** Internal to readers: how far they may read now, and whether that is the end. */
  readable(): { limit: number; end: boolean } {
    if (this.state === "failed") throw this.failure ?? new Error("the download failed");
    if (this.state === "published") return { limit: this.size, end: true };
    return { limit: Math.max(0, this.size - HOLD_BACK_BYTES), end: false };
  }

  /** Internal to readers: the first bytes (what kind of archive), once there are enough. */
  async sniff(): Promise<SpoolKind | undefined> {
    while (this.size < SNIFF_BYTES && this.state === "writing") await this.changed();
    if (this.state === "failed" || this.size === 0) return undefined;
    const head = Buffer.alloc(Math.min(this.size, SNIFF_BYTES));
    await (await this.handle).read(head, 0, head.length, 0);
    if (head[0] === 0x1f && head[1] === 0x8b) return "gzip";
    if (head.subarray(257, 262).toString("latin1") === "ustar") return "tar";
    return undefined;
  }

  async readAt(position: number, length: number): Promise<Buffer> {
    const buffer = Buffer.allocUnsafe(length);
    const { bytesRead } = await (await this.handle).read(buffer, 0, length, position);
    return buffer.subarray(0, bytesRead);
  }

  /** Resolves at the next write or state change. */
  changed(): Promise<void> {
    return new Promise((resolve) => this.wake.push(resolve));
  }

  unref(): void {
    if (--this.refs > 0 || this.closed) return;
    this.closed = true;
    void this.handle
      .then(async (handle) => {
        await handle.close();
        if (this.file !== "") await fs.rm(this.file, { force: true });
      })
      .catch(() => undefined);
  }

  private settleTo(state: State): void {
    this.state = state;
    this.notify();
  }

  private notify(): void {
    const waiting = this.wake;
    this.wake = [];
    for (const resolve of waiting) resolve();
  }
}

/** The download's body on its way to the extractor, written to the spool on the side. */
class SpoolTee extends Transform {
  constructor(private readonly spool: Spool) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    // The extractor gets the chunk at once; the next one waits for this write (bounded memory).
    this.push(chunk);
    void this.spool.received(chunk).then(() => callback());
  }

  override _flush(callback: TransformCallback): void {
    this.spool.bodyEnded(undefined);
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.spool.bodyEnded(error ?? new Error("the download stopped before its end"));
    callback(error);
  }
}

/** One client's tail-follow read of a spool, from byte 0; `close()` when done (also on errors). */
export class SpoolReader {
  private done = false;
  /** Every byte was read, and the entry is published. */
  finished = false;
  constructor(private readonly spool: Spool) {}

  get totalBytes(): number | undefined {
    return this.spool.totalBytes;
  }

  sniff(): Promise<SpoolKind | undefined> {
    return this.spool.sniff();
  }

  /** The bytes, as they become readable; throws when the download fails. */
  async *chunks(): AsyncGenerator<Buffer> {
    let position = 0;
    try {
      for (;;) {
        const { limit, end } = this.spool.readable();
        if (position < limit) {
          const chunk = await this.spool.readAt(position, Math.min(limit - position, READ_CHUNK_BYTES));
          if (chunk.length === 0) throw new Error("the spool file is shorter than written");
          position += chunk.length;
          yield chunk;
        } else if (end) {
          this.finished = true;
          return;
        } else {
          await this.spool.changed();
        }
      }
    } finally {
      this.close();
    }
  }

  close(): void {
    if (this.done) return;
    this.done = true;
    this.spool.unref();
  }
}
