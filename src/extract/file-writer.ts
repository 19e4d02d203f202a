/**
 * One file of the files form (file-set.ts) written from its body: the bytes are joined into 1 MiB
 * writes, several in flight at once at their positions (one write at a time leaves the disk and the
 * socket waiting on each other), the body paused only when 4 MiB wait to be written. Its size and
 * CRC-32 must be those of the list, and every write counts against the disk guard (DiskBudget).
 * It settles only once every write has finished and the file is closed, so nothing lands later.
 */
import fs from "node:fs";
import { promisify } from "node:util";
import type { Readable } from "node:stream";
import { ErrorCode, HubcacheError } from "../errors.js";
import { corruptArchiveError } from "./extract-errors.js";
import type { DiskBudget } from "./extract-guard.js";
import { crc32 } from "./crc32.js";

const openFile = promisify(fs.open);
const closeFile = promisify(fs.close);
const WRITE_BYTES = 1 << 20;
const crc32Hex = (crc: number): string => (crc >>> 0).toString(16).padStart(8, "0");
/**
 * With bodies handed over in 1 MiB slices (net/socket-transport.ts), 4 MiB per file was faster than
 * 16 MiB through a mirror here (median 237 against 265 ms for the 256 MB model, four files at once)
 * and kept the client's peak RSS near 130 MB instead of up to 190 MB: written blocks wait for the
 * garbage collector, and fewer are in flight.
 */
const MAX_QUEUED_BYTES = 4 << 20;

export interface FileWriteOptions {
  handle: string;
  /** The file's name in the model (for messages). */
  name: string;
  size: number;
  /** 8 hex digits; undefined only for an empty file. */
  crc32: string | undefined;
  budget: DiskBudget;
  /** Called with each body chunk's length as it arrives. */
  onBytes: (bytes: number) => void;
}

/** Write `body` into `target` (created, or emptied); resolves with the CRC-32 it checked. */
export async function writeFileFrom(
  body: Readable,
  target: string,
  options: FileWriteOptions,
): Promise<number> {
  const file = await openFile(target, "w", 0o644).catch((error: unknown) => {
    body.destroy();
    throw error;
  });
  const written = new PendingWrites(file, options.budget);
  let outcome: { crc: number } | { error: unknown };
  try {
    outcome = { crc: await pumpInto(body, written, options) };
  } catch (error) {
    outcome = { error };
  }
  await written.settled();
  await closeFile(file);
  if (!("error" in outcome) && written.failure !== undefined) outcome = { error: written.failure };
  if ("error" in outcome) {
    options.budget.release(written.bytes);
    throw outcome.error;
  }
  return outcome.crc;
}

/** Positional writes in flight, and the body's pause while too many bytes wait. */
class PendingWrites {
  bytes = 0;
  queued = 0;
  failure: unknown;
  private inFlight = 0;
  private idle: (() => void) | undefined;
  onRoom: () => void = () => undefined;
  constructor(
    private readonly file: number,
    private readonly budget: DiskBudget,
  ) {}
  write(parts: Buffer[], length: number): void {
    // A due free-space check is not waited for: a problem it finds stops the others (onProblem).
    void this.budget.claim(length);
    const at = this.bytes;
    this.bytes += length;
    this.queued += length;
    this.inFlight++;
    // fs.writev with a callback: a FileHandle's promise per write costs more than the write.
    fs.writev(this.file, parts, at, (error) => {
      if (error) this.failure ??= error;
      this.done(length);
    });
  }
  get full(): boolean {
    return this.queued >= MAX_QUEUED_BYTES;
  }
  private done(length: number): void {
    this.inFlight--;
    this.queued -= length;
    if (!this.full) this.onRoom();
    if (this.inFlight === 0) this.idle?.();
  }
  settled(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => (this.idle = resolve));
  }
}

/** Read the body into the writes; resolves with its CRC-32 once it has ended, whole and correct. */
function pumpInto(body: Readable, writes: PendingWrites, options: FileWriteOptions): Promise<number> {
  const { size } = options;
  return new Promise<number>((resolve, reject) => {
    let crc = 0;
    let received = 0;
    let parts: Buffer[] = [];
    let partBytes = 0;
    const flush = (): void => {
      if (partBytes === 0) return;
      writes.write(parts, partBytes);
      parts = [];
      partBytes = 0;
    };
    const fail = (error: unknown): void => {
      body.off("data", onData);
      body.destroy();
      reject(asError(error));
    };
    writes.onRoom = () => {
      if (body.isPaused()) body.resume();
    };
    const onData = (chunk: Buffer): void => {
      try {
        if (writes.failure !== undefined) throw asError(writes.failure);
        received += chunk.length;
        if (received > size) throw sizeError(options, received);
        crc = crc32(chunk, crc);
        parts.push(chunk);
        partBytes += chunk.length;
        options.onBytes(chunk.length);
        if (partBytes >= WRITE_BYTES) flush();
        if (writes.full) body.pause();
      } catch (error) {
        fail(error);
      }
    };
    body.on("data", onData);
    body.once("error", fail);
    // Closed without an end or an error (destroyed): cut short. After 'end' this changes nothing.
    body.once("close", () => reject(sizeError(options, received)));
    body.once("end", () => {
      try {
        if (received !== size) throw sizeError(options, received);
        flush();
        if (options.crc32 !== undefined && crc32Hex(crc) !== options.crc32) {
          throw corruptArchiveError(
            options.handle,
            `${options.name}, whose CRC-32 is ${crc32Hex(crc)} and should be ${options.crc32}: the file was damaged on the way`,
          );
        }
        resolve(crc);
      } catch (error) {
        reject(asError(error));
      }
    });
  });
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

function sizeError(options: FileWriteOptions, received: number): HubcacheError {
  return new HubcacheError(
    ErrorCode.TRUNCATED,
    `The mirror sent ${received > options.size ? "more than" : "only"} ${received} bytes of ${options.name} of ${options.handle}, which has ${options.size}.`,
    { handle: options.handle, hint: "The connection broke or the mirror's copy changed. Try again." },
  );
}
