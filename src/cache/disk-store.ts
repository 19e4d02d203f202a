/**
 * The entry store on a local filesystem, byte-compatible with Python tensorflow_hub (layout.ts). An
 * entry is produced into a unique temp dir `<hash>.<uid>.tmp` and committed with one rename to
 * `<hash>`, then its descriptor, then its record are renamed into place. A crash leaves only a
 * temp dir, temp files and a lock, which the next run removes (orphans.ts). docs/concurrency.md
 * describes the protocol.
 */
import { type Stats, createReadStream, promises as fs, readFileSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { type HubcacheError, errnoCode } from "../errors.js";
import { makeDirs } from "../make-dirs.js";
import { newUid } from "../uid.js";
import { acquireLock, cacheDirNotWritable, readLockFile, tryAcquireLock } from "./disk-lock.js";
import type {
  CacheDirHint,
  CommitOutcome,
  EntryContext,
  EntryFiles,
  EntryState,
  EntryStore,
  ListedEntry,
  Staged,
} from "./entry-store.js";
import { listDirTree, removeTree } from "./file-tree.js";
import { holderIsGone, ownLockUids } from "./holder.js";
import { type EntryPaths, descriptorText, entryPathsForHash } from "./layout.js";
import type { HeldLock, WaitOptions } from "./lock-wait.js";
import { cleanupAfterGoneHolder, sweepCacheDir } from "./orphans.js";
import { type DiskRecord, type Produced, parseRecord, recordFields } from "./record.js";
import { testPause } from "./test-pause.js";

/** What inspectDiskEntry finds (an empty directory is told apart from other incomplete entries). */
export type DiskEntryState =
  | {
      state: "hit";
      writer: "hubcache" | "other";
      record: DiskRecord | undefined;
      /** The entry directory's mtime: its last use, as cache management records it (touch). */
      mtimeMs: number;
    }
  | { state: "missing" }
  | { state: "empty" }
  | { state: "incomplete"; reason: string };

function readDiskRecord(file: string): DiskRecord | undefined {
  try {
    return parseRecord<DiskRecord>(readFileSync(file, "utf8"));
  } catch {
    return undefined;
  }
}

/** Which file or directory, on a local disk (as a record names it). */
type FileIdentity = Pick<DiskRecord, "dev" | "ino" | "birthtimeMs">;

/** Does `identity` name this inode and birth time (on this device)? */
function sameIdentity(identity: FileIdentity | undefined, stat: FileIdentity): boolean {
  return (
    identity !== undefined &&
    identity.ino === stat.ino &&
    identity.dev === stat.dev &&
    identity.birthtimeMs === stat.birthtimeMs
  );
}

/**
 * Is the entry usable? Synchronous on purpose: a warm hit is a handful of stat calls, and going
 * through the thread pool would cost more than the work. Reads only; writes nothing.
 *
 * A record vouches for the directory it names by identity (the fast path). When the directory is
 * another one, either someone replaced the entry (Python tensorflow_hub: the record itself was not
 * touched) or the whole cache was copied (`cp -a`, rsync, a CI cache restore: the record file is a
 * copy too, or an old record says nothing of its own identity); a copy is checked against the record.
 */
export function inspectDiskEntry(paths: EntryPaths): DiskEntryState {
  let dirStat;
  try {
    dirStat = statSync(paths.dir);
  } catch (error) {
    if (errnoCode(error) === "ENOENT" || errnoCode(error) === "ENOTDIR") return { state: "missing" };
    throw error;
  }
  if (!dirStat.isDirectory()) return { state: "incomplete", reason: "the entry is not a directory" };
  const record = readDiskRecord(paths.record);
  if (record && (sameIdentity(record, dirStat) || recordWasCopied(paths, record))) {
    return checkFilesAgainstRecord(paths, record, dirStat.mtimeMs);
  }
  // Written by Python tensorflow_hub (or by an interrupted publish): TF Hub's rule, non-empty means cached.
  return readdirSync(paths.dir).length > 0
    ? { state: "hit", writer: "other", record: undefined, mtimeMs: dirStat.mtimeMs }
    : { state: "empty" };
}

/** Is the record file not the one hubcache wrote (a copy), or too old to say? */
function recordWasCopied(paths: EntryPaths, record: DiskRecord): boolean {
  if (record.recordFile === undefined) return true;
  const stat = statIfThere(paths.record);
  return stat === undefined || !sameIdentity(record.recordFile, stat);
}

function statIfThere(file: string): Stats | undefined {
  try {
    return statSync(file);
  } catch {
    return undefined;
  }
}

/** Every file the record lists is there, a regular file of its size. */
function checkFilesAgainstRecord(paths: EntryPaths, record: DiskRecord, mtimeMs: number): DiskEntryState {
  for (const file of record.files) {
    const stat = statIfThere(path.join(paths.dir, file.path));
    if (stat === undefined || !stat.isFile()) {
      return { state: "incomplete", reason: `${file.path} is missing` };
    }
    if (stat.size !== file.size) {
      return { state: "incomplete", reason: `${file.path} has ${stat.size} bytes, expected ${file.size}` };
    }
  }
  // Sizes only: a hit must stay a few stat calls. `hubcache verify` checks the CRC-32s of the record.
  return { state: "hit", writer: "hubcache", record, mtimeMs };
}

/** Errno codes of a failed commit that mean the cache dir cannot take the entry. */
const UNWRITABLE = new Set(["ENOSPC", "EDQUOT", "EACCES", "EROFS"]);
/** Errno codes of a rename onto an entry that is already there. */
const TARGET_EXISTS = new Set(["ENOTEMPTY", "EEXIST", "EISDIR", "ENOTDIR"]);

interface DiskStaged extends Staged {
  /** Set once the temp dir became the entry (then cleanup leaves it). */
  committed: boolean;
}

export class DiskEntryStore implements EntryStore {
  /**
   * `location`: the cache dir. `lockTimeoutMs`: the stale window, after which leftovers owned by no
   * lock are removed. `cacheDirHint`: which setting chose the cache dir, for hints (config.ts cacheDirHint).
   */
  constructor(
    readonly location: string,
    private readonly options: { lockTimeoutMs: number; cacheDirHint?: CacheDirHint | undefined },
  ) {}

  paths(hash: string): EntryPaths {
    return entryPathsForHash(this.location, hash);
  }

  locationOf(hash: string): string {
    return this.paths(hash).dir;
  }

  async inspect(hash: string): Promise<EntryState> {
    const state = inspectDiskEntry(this.paths(hash));
    switch (state.state) {
      case "hit":
        return { state: "hit", writer: state.writer, files: state.record?.files, lastUsedMs: state.mtimeMs };
      case "empty":
        return { state: "incomplete", reason: "the entry is empty" };
      default:
        return state;
    }
  }

  async tidyAfterHit(hash: string, { emit }: EntryContext): Promise<void> {
    // A lock beside a complete entry is left by a holder killed after publishing; one stat to know.
    const paths = this.paths(hash);
    if (lockPresent(paths)) await cleanupAfterGoneHolder(paths, emit);
  }

  async lock(hash: string, options: Omit<WaitOptions, "entryReady">): Promise<HeldLock | undefined> {
    const paths = this.paths(hash);
    try {
      // Never `recursive: true`: Node 20's loops forever on paths such as /proc/x (make-dirs.ts).
      await makeDirs(this.location);
    } catch (error) {
      throw this.notWritable(error, options.handle);
    }
    return acquireLock(paths, {
      ...options,
      cacheDirHint: this.options.cacheDirHint,
      entryReady: () => inspectDiskEntry(paths).state === "hit",
    });
  }

  async sweep(_hash: string, _lock: HeldLock, { emit }: EntryContext): Promise<void> {
    // Leftovers of dead downloads, this entry's and others': the whole cache dir.
    await sweepCacheDir(this.location, { timeoutMs: this.options.lockTimeoutMs, emit });
  }

  async stage(hash: string, lock: HeldLock, context: EntryContext): Promise<Staged> {
    const paths = this.paths(hash);
    const dir = paths.tmpDir(lock.uid);
    await fs.mkdir(dir).catch((error: unknown) => {
      throw this.unwritable(error, context.handle);
    });
    const staged: DiskStaged = {
      dir,
      committed: false,
      async cleanup() {
        if (!staged.committed) await removeTree(dir);
        await fs.rm(`${paths.descriptor}.tmp${lock.uid}`, { force: true });
        await fs.rm(`${paths.record}.tmp${lock.uid}`, { force: true });
      },
    };
    return staged;
  }

  async commit(
    hash: string,
    staged: Staged,
    lock: HeldLock,
    produced: Produced,
    _context: EntryContext,
  ): Promise<CommitOutcome> {
    try {
      return await this.renameIntoPlace(this.paths(hash), staged as DiskStaged, lock, produced);
    } catch (error) {
      throw this.unwritable(error, produced.handle);
    }
  }

  /**
   * The descriptor and record are written under temp names carrying the lock's uid (so whoever finds
   * them after a crash knows whose they are), and stay there until our entry is in place: TF Hub
   * renames its descriptor before the entry, so a lost or failed publish leaves it with no entry, or
   * overwrites the winner's.
   */
  private async renameIntoPlace(
    paths: EntryPaths,
    staged: DiskStaged,
    lock: HeldLock,
    produced: Produced,
  ): Promise<CommitOutcome> {
    const descriptorTmp = `${paths.descriptor}.tmp${lock.uid}`;
    const recordTmp = `${paths.record}.tmp${lock.uid}`;
    // The directory's mtime is the entry's last use (cache management): now, not the archive's.
    const now = new Date();
    await fs.utimes(staged.dir, now, now);
    const dirStat = await fs.stat(staged.dir);
    const record: DiskRecord = {
      ...recordFields(produced),
      dev: dirStat.dev,
      ino: dirStat.ino,
      birthtimeMs: dirStat.birthtimeMs,
    };
    await fs.writeFile(descriptorTmp, descriptorText(produced.handle), { flag: "wx" });
    testPause("during-descriptor-write");
    await writeRecordFile(recordTmp, record);
    testPause("before-rename");
    // A holder judged stale and taken over must not publish: the new holder may have removed part
    // of our temp dir as an orphan. Someone else is downloading it now; wait for them instead.
    if (!(await lock.stillHeld())) return { outcome: "lock-lost" };
    try {
      await fs.rename(staged.dir, paths.dir);
    } catch (error) {
      // Someone else (Python, or a process that did not see our lock) published first: keep theirs.
      if (TARGET_EXISTS.has(errnoCode(error) ?? "")) {
        return { outcome: "lost-to-another-writer", files: undefined };
      }
      throw error;
    }
    staged.committed = true;
    testPause("after-rename");
    // Our entry is published: now its descriptor, then our record (the record comes last).
    for (const [tmp, final] of [
      [descriptorTmp, paths.descriptor],
      [recordTmp, paths.record],
    ] as const) {
      await fs.rename(tmp, final).catch((error: unknown) => {
        // ENOENT: a process that judged us gone already installed it (orphans.ts adoptRecords).
        if (errnoCode(error) !== "ENOENT") throw error;
      });
    }
    return { outcome: "published" };
  }

  /**
   * Out of the entry's name in one rename (to `<hash>.<uid>.trash`, which the next prune removes
   * if we crash: sweepDebris), then its descriptor and record, then its files. A reader sees it
   * whole or missing.
   */
  async remove(hash: string): Promise<void> {
    const paths = this.paths(hash);
    const doomed = trashPath(paths.dir);
    try {
      await fs.rename(paths.dir, doomed);
    } catch (error) {
      if (errnoCode(error) !== "ENOENT") throw this.unwritable(error, undefined);
    }
    testPause("after-remove-rename");
    await fs.rm(paths.descriptor, { force: true });
    await fs.rm(paths.record, { force: true });
    await removeTree(doomed);
  }

  async *list(): AsyncIterable<ListedEntry> {
    let names: string[];
    try {
      names = await fs.readdir(this.location);
    } catch (error) {
      if (errnoCode(error) === "ENOENT") return;
      throw error;
    }
    const hashes = new Set<string>();
    for (const name of names) {
      const hash = /^([0-9a-f]{40})(?:$|\.lock$|\.descriptor\.txt$|\.hubcache\.json$)/.exec(name)?.[1];
      if (hash !== undefined) hashes.add(hash);
    }
    for (const hash of [...hashes].sort()) yield await this.listed(hash);
  }

  private async listed(hash: string): Promise<ListedEntry> {
    const paths = this.paths(hash);
    const state = inspectDiskEntry(paths);
    const record = state.state === "hit" ? state.record : undefined;
    const descriptor = statSync(paths.descriptor, { throwIfNoEntry: false });
    const createdMs = record ? Date.parse(record.createdAt) : descriptor?.mtimeMs;
    let bytes = record?.bytes;
    let files = record?.files.length;
    if (state.state === "hit" && !record) {
      // Another writer's entry (Python): its size is a walk; its last use, its folder's and descriptor's times.
      const tree = await listDirTree(paths.dir).catch(() => undefined);
      bytes = tree?.reduce((sum, file) => sum + file.size, 0);
      files = tree?.length;
    }
    const used = state.state === "hit" ? Math.max(state.mtimeMs, descriptor?.mtimeMs ?? 0) : undefined;
    return {
      hash,
      state: state.state === "hit" ? "ok" : (await liveLock(paths)) ? "downloading" : "incomplete",
      writer: state.state === "hit" ? state.writer : undefined,
      bytes,
      files,
      createdMs,
      lastUsedMs: used ?? createdMs,
      handle: record?.handle ?? (descriptor ? await descriptorHandle(paths.descriptor) : undefined),
      archiveSha256: record?.archiveSha256,
    };
  }

  async touch(hash: string): Promise<void> {
    const dir = this.paths(hash).dir;
    const failedAt = untouchable.get(dir);
    if (failedAt !== undefined && Date.now() - failedAt < UNTOUCHABLE_RETRY_MS) return;
    const now = new Date();
    try {
      await fs.utimes(dir, now, now);
    } catch {
      untouchable.set(dir, Date.now()); // read-only, or another user's: record nothing, fail nothing
    }
  }

  tryLock(name: string, context: EntryContext): Promise<HeldLock | undefined> {
    return tryAcquireLock(entryPathsForHash(this.location, name), {
      handle: context.handle,
      emit: context.emit,
      timeoutMs: this.options.lockTimeoutMs,
    });
  }

  async lockHolder(name: string): Promise<string | undefined> {
    const lock = await readLockFile(entryPathsForHash(this.location, name).lock).catch(() => undefined);
    return lock?.content;
  }

  async readNote(name: string): Promise<string | undefined> {
    return fs.readFile(path.join(this.location, name), "utf8").catch(() => undefined);
  }

  async writeNote(name: string, content: string): Promise<void> {
    const file = path.join(this.location, name);
    const tmp = `${file}.tmp${newUid()}`;
    await fs.writeFile(tmp, content, { flag: "wx" });
    await fs.rename(tmp, file).catch(async (error: unknown) => {
      await fs.rm(tmp, { force: true });
      throw error;
    });
  }

  /** Removals' `.trash` dirs (at once: nobody owns them), then what dead downloads left (orphans.ts). */
  async sweepDebris({ emit }: EntryContext): Promise<string[]> {
    const removed: string[] = [];
    const names = await fs.readdir(this.location).catch(() => [] as string[]);
    for (const name of names) {
      const full = path.join(this.location, name);
      if (!TRASH_NAME.test(name) && !(NOTE_TEMP_NAME.test(name) && (await quietFor(full, 60_000)))) continue;
      await removeTree(full);
      removed.push(full);
    }
    await sweepCacheDir(this.location, {
      timeoutMs: this.options.lockTimeoutMs,
      emit: (event) => {
        if (event.type === "orphan-removed") removed.push(event.path);
        emit(event);
      },
    });
    return removed;
  }

  async entryFiles(hash: string): Promise<EntryFiles> {
    const paths = this.paths(hash);
    // The record of this very directory, even when the entry no longer matches it (that is damage).
    const dirStat = statSync(paths.dir, { throwIfNoEntry: false });
    const found = readDiskRecord(paths.record);
    const record =
      found && dirStat && (sameIdentity(found, dirStat) || recordWasCopied(paths, found)) ? found : undefined;
    const files = await listDirTree(paths.dir).catch(() => []);
    return { record, files, open: async (file) => createReadStream(path.join(paths.dir, file)) };
  }

  private unwritable(error: unknown, handle: string | undefined): unknown {
    return UNWRITABLE.has(errnoCode(error) ?? "") ? this.notWritable(error, handle) : error;
  }

  private notWritable(error: unknown, handle: string | undefined): HubcacheError {
    return cacheDirNotWritable(this.location, handle, error, this.options.cacheDirHint);
  }

  /** Why an offline resolve finds nothing here, when it is the cache dir itself (else undefined). */
  describeMissing(): string | undefined {
    let stat;
    try {
      stat = statSync(this.location, { throwIfNoEntry: false });
    } catch {
      return `the cache directory ${this.location} cannot be read (a parent is not a directory, or not readable)`;
    }
    if (stat === undefined) return `the cache directory ${this.location} does not exist`;
    if (!stat.isDirectory()) return `the cache directory ${this.location} is a file, not a directory`;
    return undefined;
  }
}

/**
 * Write the record to `file` (created exclusively), with the identity of that file itself: a rename
 * keeps it, a copy of the cache does not (inspectDiskEntry tells a copied cache by it).
 */
async function writeRecordFile(file: string, record: DiskRecord): Promise<void> {
  const handle = await fs.open(file, "wx");
  try {
    const { dev, ino, birthtimeMs } = await handle.stat();
    await handle.writeFile(JSON.stringify({ ...record, recordFile: { dev, ino, birthtimeMs } }));
  } finally {
    await handle.close();
  }
}

/** Where `remove` moves an entry before deleting it: `<hash>.<uid>.trash`. */
function trashPath(dir: string): string {
  return `${dir}.${newUid()}.trash`;
}

const TRASH_NAME = /^[0-9a-f]{40}\.[0-9a-f]{32}\.trash$/;
/** A cache-wide note's (or lock's) temp file left by a crash: `hubcache-….tmp<uid>`. */
const NOTE_TEMP_NAME = /^hubcache-[a-z.-]+\.tmp[0-9a-f]{32}$/;

async function quietFor(file: string, ms: number): Promise<boolean> {
  const stat = await fs.lstat(file).catch(() => undefined);
  return stat !== undefined && Date.now() - stat.mtimeMs > ms;
}

/** Entry dirs whose touch failed (read-only, another user's), and when: not tried again for a while. */
const untouchable = new Map<string, number>();
const UNTOUCHABLE_RETRY_MS = 10 * 60_000;

/** The handle a descriptor names ("Module: <handle>" on its first line). */
async function descriptorHandle(file: string): Promise<string | undefined> {
  const text = await fs.readFile(file, "utf8").catch(() => "");
  return /^Module: (.*)$/m.exec(text)?.[1]?.trim() || undefined;
}

/** Is there a lock whose holder is not provably gone (a dead process on this host)? */
async function liveLock(paths: EntryPaths): Promise<boolean> {
  if (!lockPresent(paths)) return false;
  const lock = await readLockFile(paths.lock).catch(() => undefined);
  return lock !== undefined && !holderIsGone(lock.owner, lock.mtimeMs, ownLockUids());
}

function lockPresent(paths: EntryPaths): boolean {
  try {
    return statSync(paths.lock, { throwIfNoEntry: false }) !== undefined;
  } catch {
    return false; // cannot even look: nothing we could clean up
  }
}
