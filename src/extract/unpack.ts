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
 * - tar reports every file and folder it extracts through `filter`, in archive order, with the
 *   name, type and size it will use: the run compares them with what MemberCheck let through.
 * - tar keeps each entry in its PathReservations until the Unpack is gone (about 3 KB a member:
 *   600 MB for 200,000), and starts writing entries without waiting for earlier ones: the run
 *   counts reservations, lets MemberCheck wait until they are all released, and then gives tar a
 *   fresh PathReservations (the old one holds nothing that is still running).
 */
import type * as Tar from "tar";
import type { HubcacheError } from "../errors.js";
import { isCwdError, unsafeArchiveError } from "./extract-errors.js";
import { MAX_META_BYTES } from "./member-check.js";
import type { Member } from "./member-rules.js";
import { shown } from "./tar-header.js";

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
  /** What MemberCheck let through and tar has not reported yet, in archive order. */
  expected: Member[] = [];
  private ended = false;
  /** Entries tar has handed to its writer, and reservations taken and released. */
  private emitted = 0;
  private reserved = 0;
  private released = 0;
  private waiter: { members: number; resolve: () => void } | undefined;
  private renewReservations: () => void = () => undefined;

  /** Called with the error that refuses the archive, or tar's error: it must fail the pipeline. */
  stop: (error: Error) => void = () => undefined;

  constructor(
    tar: typeof Tar,
    dir: string,
    private readonly handle: string,
  ) {
    this.unpack = tar.x({
      maxMetaEntrySize: MAX_META_BYTES,
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
    this.unpack.on("entry", () => {
      this.emitted++;
      this.checkWritten();
    });
    this.countReservations();
    this.settled = this.whenSettled();
  }

  /** Resolves once tar has written the first `members` members (or the run has failed or ended). */
  whenWritten(members: number): Promise<void> {
    return new Promise((resolve) => {
      this.waiter = { members, resolve };
      this.checkWritten();
    });
  }

  private checkWritten(): void {
    const waiter = this.waiter;
    if (!waiter) return;
    const idle = this.emitted >= waiter.members && this.reserved === this.released;
    if (!idle && !this.failed && !this.ended) return;
    this.waiter = undefined;
    if (idle) this.renewReservations();
    waiter.resolve();
  }

  private countReservations(): void {
    type Reservations = Tar.Unpack["reservations"];
    const Fresh = this.unpack.reservations.constructor as new () => Reservations;
    let current = this.unpack.reservations;
    this.renewReservations = () => {
      current = new Fresh();
    };
    const counted: Pick<Reservations, "reserve"> = {
      reserve: (paths, fn) => {
        this.reserved++;
        return current.reserve(paths, (clear) =>
          fn(() => {
            const cleared = clear();
            this.released++;
            this.checkWritten();
            return cleared;
          }),
        );
      },
    };
    this.unpack.reservations = counted as Reservations;
  }

  private accept(entryPath: string, entry: Tar.ReadEntry): boolean {
    if (this.failed) return false;
    const reason =
      entryProblem(entry.path ?? entryPath, entry.type) ?? mismatch(this.expected.shift(), entry);
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
      const done = (): void => {
        this.ended = true;
        this.checkWritten();
        resolve();
      };
      this.unpack.on("end", done);
      this.unpack.on("abort", done);
      // tar reports each problem as an "error" event, also after the pipeline is over: keep a listener.
      this.unpack.on("error", (error: unknown) => {
        this.tarError ??= error;
        this.failed = true;
        // Stop the data too, so the pipeline fails rather than wait for tar to read on.
        this.stop(error as Error);
        if (isCwdError(error)) done();
      });
    });
  }
}

/** How tar's reading of a member differs from MemberCheck's, or undefined if it does not. */
function mismatch(expected: Member | undefined, entry: Tar.ReadEntry): string | undefined {
  if (!expected) return `a member tar found and hubcache's check did not (${shown(entry.path)})`;
  const kind = entry.type === "Directory" ? "dir" : "file";
  if (
    entry.path === expected.path &&
    kind === expected.kind &&
    (kind === "dir" || entry.size === expected.size)
  ) {
    return undefined;
  }
  return `a member tar would extract differently: ${shown(expected.path)} (${expected.kind}, ${expected.size} bytes) as ${shown(entry.path)} (${entry.type}, ${entry.size} bytes)`;
}
