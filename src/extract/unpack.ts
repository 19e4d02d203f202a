/**
 * node-tar's Unpack, set up the way hubcache needs it, and the facts about it the extractor relies
 * on (each checked by test/archive-safety.test.ts):
 * - `filter` runs while a header is parsed, before the entry is queued for writing; an entry it
 *   refuses is never written. (`onReadEntry` runs too late: tar still writes that entry.)
 * - `strict: true` turns every tar warning (bad checksum, truncated input...) into an error.
 * - after any failure, ending the parser makes tar finish what it has queued and emit "end"; the
 *   extractor waits for that, so no write lands in the directory after it returns. The one
 *   exception is a target directory that is gone (tar's CwdError): then tar reports an "error" and
 *   never ends, and the run settles on that error (nothing can land in a missing directory).
 * - the archive must end with tar's end-of-archive marker, two zero blocks (tar's "eof" event).
 */
import type * as Tar from "tar";
import { ErrorCode, HubcacheError } from "../errors.js";
import { isCwdError } from "./extract-errors.js";

const SAFE_TYPES = new Set(["File", "OldFile", "ContiguousFile", "Directory"]);

/** Why an entry makes the whole archive unsafe, or undefined if it is a plain file or folder. */
export function entryProblem(entryPath: string, type: string): string | undefined {
  if (!SAFE_TYPES.has(type)) {
    const what: Record<string, string> = {
      SymbolicLink: "a symbolic link",
      Link: "a hard link",
      CharacterDevice: "a character device",
      BlockDevice: "a block device",
      FIFO: "a FIFO",
    };
    return `${what[type] ?? `an entry of type ${type}`} (${entryPath})`;
  }
  if (entryPath.startsWith("/") || entryPath.startsWith("\\") || /^[a-zA-Z]:/.test(entryPath)) {
    return `an absolute path (${entryPath})`;
  }
  if (entryPath.split(/[\\/]/).includes("..")) return `a path with ".." (${entryPath})`;
  return undefined;
}

/** The refusal of a whole archive because of one member. */
export function unsafeArchiveError(handle: string, reason: string): HubcacheError {
  return new HubcacheError(
    ErrorCode.UNSAFE_ARCHIVE,
    `The archive of ${handle} holds ${reason}; the whole archive was refused.`,
    {
      handle,
      hint: "Model archives hold only regular files and folders (TF Hub refuses links too). Do not use this archive; tell its publisher.",
    },
  );
}

/** One node-tar Unpack into `dir`, and what it reported. */
export class UnpackRun {
  readonly unpack: Tar.Unpack;
  /** Resolves once tar has finished (or dropped) every entry it accepted. */
  readonly settled: Promise<void>;
  entries = 0;
  sawEndOfArchive = false;
  /** The first refused member. */
  problem: HubcacheError | undefined;
  /** The first error tar reported. */
  tarError: unknown;
  failed = false;

  /** `stop` is called once, with the error that refuses the archive: it must stop the input. */
  constructor(
    tar: typeof Tar,
    dir: string,
    private readonly handle: string,
    private readonly stop: (error: Error) => void,
  ) {
    this.unpack = tar.x({
      cwd: dir,
      strict: true,
      preserveOwner: false,
      // Never guess zstd/brotli from the bytes: only what the extractor sniffed is extracted.
      zstd: false,
      brotli: false,
      // Runs as each header is parsed, before tar queues the entry: a refused entry is never written.
      filter: (entryPath, entry) => this.accept(entryPath, entry as Tar.ReadEntry),
    });
    // The end-of-archive marker is two zero blocks: tar's parser says "eof" after the second (its
    // "nullBlock" event is the first, which alone is a cut-short archive). It reads nothing after it.
    this.unpack.on("eof", () => {
      this.sawEndOfArchive = true;
    });
    this.settled = this.whenSettled();
  }

  private accept(entryPath: string, entry: Tar.ReadEntry): boolean {
    if (this.failed) return false;
    const reason = entryProblem(entry.path ?? entryPath, entry.type);
    if (reason) {
      this.refuse(unsafeArchiveError(this.handle, reason));
      return false;
    }
    this.entries++;
    // No setuid/setgid/sticky bits and no world-writable files in a shared cache; owner can always read.
    if (typeof entry.mode === "number") {
      entry.mode = (entry.mode & 0o755) | (entry.type === "Directory" ? 0o700 : 0o600);
    }
    return true;
  }

  /** Refuse the archive: no further entry is accepted, and the input stops. */
  refuse(problem: HubcacheError): void {
    if (this.failed) return;
    this.failed = true;
    this.problem = problem;
    // Stop the data; tar finishes only entries it had already accepted.
    this.stop(problem);
  }

  /** After the pipeline failed: let tar finish (or drop) what it accepted, then settle. */
  async finish(): Promise<void> {
    this.failed = true;
    try {
      this.unpack.end();
    } catch {
      // tar reports through "error", which is handled in whenSettled.
    }
    await this.settled;
  }

  /**
   * tar emits "end" once every accepted entry is on disk. Not "close": stream.pipeline emits a
   * "close" of its own on a failed non-standard stream, long before tar is done writing.
   * A target directory that is gone (tar's CwdError: another process removed it) is the one failure
   * after which tar never emits "end": it reports an "error" and leaves the entry pending. Nothing
   * more can be written into a directory that is not there, so that error settles it too.
   */
  private whenSettled(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.unpack.on("end", () => resolve());
      this.unpack.on("abort", () => resolve());
      // tar reports each problem as an "error" event, also after the pipeline is over: keep a listener.
      this.unpack.on("error", (error: unknown) => {
        this.tarError ??= error;
        if (isCwdError(error)) {
          this.failed = true;
          // Stop the data too, so the pipeline fails rather than wait for tar to read on.
          this.stop(error as Error);
          resolve();
        }
      });
    });
  }
}
