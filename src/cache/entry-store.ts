/**
 * An entry store: where cache entries live (a local directory, an s3:// or gs:// prefix), seen
 * through the few operations the one cache algorithm (ensure-entry.ts) and cache management need.
 * Implementations: disk-store.ts (a local cache dir, shared with Python tensorflow_hub) and
 * object-store.ts (a cache on object storage). What really differs between them is how an entry is
 * committed: one rename on disk, upload-then-record on object storage.
 *
 * Entries are named by hash: sha1 of the exact handle (layout.ts).
 */
import type { Readable } from "node:stream";
import type { EventListener } from "../events.js";
import type { TreeFile } from "../storage/transfer.js";
import type { HeldLock, WaitOptions } from "./lock-wait.js";
import type { Produced, RecordFields } from "./record.js";

/** A hint sentence: which setting chose the cache, and to point it at `target` (config.ts cacheDirHint). */
export type CacheDirHint = (target: string) => string;

/** Who wrote an entry: hubcache (it has a record), or someone else (Python tensorflow_hub). */
export type EntryWriter = "hubcache" | "other";

export type EntryState =
  /** Usable. `files` is known when the entry has a record, or was listed to judge it. */
  | {
      state: "hit";
      writer: EntryWriter;
      files: TreeFile[] | undefined;
      /** When the entry was last used, as the store records it (cache management), ms. */
      lastUsedMs?: number | undefined;
    }
  | { state: "missing" }
  /** Something is there that does not count; it is removed before a new one is committed. */
  | { state: "incomplete"; reason: string }
  /** Looks like another writer's entry, but its lock is held (maybe mid-copy): wait for the lock. */
  | { state: "locked" };

/** A directory that a producer fills, on local disk, and what to remove when done. */
export interface Staged {
  dir: string;
  /** Remove whatever of the staging is left (after a commit, only what the commit did not take). */
  cleanup(): Promise<void>;
}

export type CommitOutcome =
  /** Our entry is in place. */
  | { outcome: "published" }
  /** Another writer's whole entry is in place: it is kept and ours dropped. */
  | { outcome: "lost-to-another-writer"; files: TreeFile[] | undefined }
  /** Our lock was taken over before we committed: nothing was committed; wait for the new holder. */
  | { outcome: "lock-lost" };

/** One entry as cache management sees it (issue 11's ls and prune). */
export interface ListedEntry {
  hash: string;
  /** `ok`: usable; `incomplete`: there but not usable; `downloading`: a lock is held, no usable entry. */
  state: "ok" | "incomplete" | "downloading";
  writer: EntryWriter | undefined;
  /** Sum of the files' sizes, when known without reading every file (the record says). */
  bytes: number | undefined;
  files: number | undefined;
  /** When the entry was written (the record's createdAt, else the descriptor's time), ms. */
  createdMs: number | undefined;
  /** When it was last used (cache management's touch, else when it was written), ms. */
  lastUsedMs: number | undefined;
  /** The handle, redacted, as its record or descriptor says. */
  handle: string | undefined;
  /** SHA-256 of the archive as received, when its record has it. */
  archiveSha256: string | undefined;
}

/** The record of an entry and its files, for `verify`. */
export interface EntryFiles {
  record: RecordFields | undefined;
  /** The files there are now (a walk or a listing). */
  files: TreeFile[];
  /** Open one of them for reading. */
  open: (file: string) => Promise<Readable>;
}

/** Who is asking, for events and messages, and the caller's signal. */
export interface EntryContext {
  handle: string;
  emit: EventListener;
  signal?: AbortSignal | undefined;
}

export interface EntryStore {
  /** The store's root location (a directory, or s3://bucket/prefix), for messages. */
  readonly location: string;
  /** Where the entry `hash` is, as resolve returns it. */
  locationOf(hash: string): string;
  /**
   * Is the entry usable? Reads only, writes nothing (a read-only cache serves hits).
   * `underLock`: the caller holds the entry's lock, so a held lock says nothing.
   */
  inspect(hash: string, options?: { underLock?: boolean }): Promise<EntryState>;
  /** After a hit: remove what a holder killed after publishing left (best effort, never fails). */
  tidyAfterHit(hash: string, context: EntryContext): Promise<void>;
  /**
   * Take the entry's download lock, waiting for (or taking over from) another holder. Undefined
   * when the entry became usable while waiting.
   */
  lock(hash: string, options: Omit<WaitOptions, "entryReady">): Promise<HeldLock | undefined>;
  /** Under the lock: remove leftovers of dead downloads (best effort; runs beside the producer). */
  sweep(hash: string, lock: HeldLock, context: EntryContext): Promise<void>;
  /** Under the lock: a local directory to produce the entry into. */
  stage(hash: string, lock: HeldLock, context: EntryContext): Promise<Staged>;
  /** Under the lock: make the staged entry the entry `hash`, with its descriptor and record. */
  commit(
    hash: string,
    staged: Staged,
    lock: HeldLock,
    produced: Produced,
    context: EntryContext,
  ): Promise<CommitOutcome>;
  /**
   * Remove the entry (its files, descriptor and record): first out of the entry's name in one step
   * where the store can (a rename on disk; on object storage its descriptor and record go first,
   * so it stops counting), then its files. A concurrent reader sees it whole or missing.
   */
  remove(hash: string): Promise<void>;
  /**
   * For an offline miss: what is wrong with the store itself (its directory is missing, or a file),
   * when something is; undefined otherwise. Cheap; only called on that error path.
   */
  describeMissing?(): string | undefined;
  /** Every entry in the store, with what is known of it without reading its files. */
  list(): AsyncIterable<ListedEntry>;
  /**
   * Cache management (issue 11). Record a use of the entry now: at most one small write (a
   * directory's mtime on disk, a `<hash>.used` object on object storage). Best effort: a read-only
   * cache records nothing and this never throws.
   */
  touch(hash: string): Promise<void>;
  /**
   * Take the lock `<name>.lock` (an entry's hash, or a cache-wide name such as "hubcache-prune")
   * without waiting: undefined when someone that is not provably gone or stalled holds it.
   */
  tryLock(name: string, context: EntryContext): Promise<HeldLock | undefined>;
  /** The content ("host.pid.uid") of the lock `<name>.lock`, if there is one. */
  lockHolder(name: string): Promise<string | undefined>;
  /** A small cache-wide note (`<name>`, not an entry's): its content, or undefined. */
  readNote(name: string): Promise<string | undefined>;
  writeNote(name: string, content: string): Promise<void>;
  /** Remove what removals and dead downloads left anywhere in the store; returns where. */
  sweepDebris(context: EntryContext): Promise<string[]>;
  /** The entry's record and its files as they are now, for `verify`. */
  entryFiles(hash: string): Promise<EntryFiles>;
}
