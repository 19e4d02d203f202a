/**
 * The entry store on object storage (TFHUB_CACHE_DIR=s3://… or gs://…, and the shared tier of
 * HUBCACHE_SHARED_CACHE). Same layout as on disk, below the location's prefix:
 *
 *   <prefix>/<hash>/<files…>                the model, as in the archive (what TF and Python read)
 *   <prefix>/<hash>.descriptor.txt          TF Hub's descriptor
 *   <prefix>/<hash>.hubcache.json           hubcache's record: the commit marker, written last
 *   <prefix>/<hash>.lock                    download lock, "hostname.pid.uid"
 *   <prefix>/<hash>.<uid>.tmp/<files…>      an upload in progress
 *
 * Object stores cannot rename a folder, so an entry is committed by its record: files are
 * uploaded under the temp prefix, copied server-side to `<hash>/`, then the descriptor, then the
 * record `<hash>.hubcache.json` (create-only where the store supports it) are written. hubcache
 * counts an entry only when the record exists and every file it lists is there with its size. A
 * crash at any instant therefore never shows a partial entry to hubcache.
 *
 * An entry written by Python tensorflow_hub has no record. It counts, as in TF Hub, when `<hash>/`
 * is non-empty, but only with its descriptor present and no lock held (Python copies objects one
 * by one when it "renames" on object storage, so a lock means it may be mid-copy). hubcache writes
 * the descriptor only after the last copy, and removes it first when it removes an entry, so its
 * own interrupted publishes never pass this rule either.
 */
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { text } from "node:stream/consumers";
import { ErrorCode, HubcacheError } from "../errors.js";
import { isObjectNotFound } from "../storage/errors.js";
import {
  type TreeFile,
  downloadTree,
  listTree,
  mapLimit,
  probeCreateOnly,
  uploadTree,
} from "../storage/transfer.js";
import type { Storage } from "../storage/types.js";
import type {
  CommitOutcome,
  EntryContext,
  EntryFiles,
  EntryState,
  EntryStore,
  ListedEntry,
  Staged,
} from "./entry-store.js";
import { removeTree } from "./file-tree.js";
import { descriptorText, parseLockContent } from "./layout.js";
import type { HeldLock, WaitOptions } from "./lock-wait.js";
import { acquireObjectLock, objectLockContent, tryAcquireObjectLock } from "./object-lock.js";
import { type ObjectRecord, type Produced, parseRecord, recordFields } from "./record.js";

/** The keys of one entry, relative to the store's root. */
export interface ObjectEntryKeys {
  hash: string;
  /** Prefix of the model's files: "<hash>/". */
  dir: string;
  descriptor: string;
  record: string;
  lock: string;
  /** When the entry was last used (cache management's touch), by the object's modification time. */
  used: string;
  /** Prefix of one upload: "<hash>.<uid>.tmp/". */
  tmp(uid: string): string;
}

export function objectEntryKeys(hash: string): ObjectEntryKeys {
  return {
    hash,
    dir: `${hash}/`,
    descriptor: `${hash}.descriptor.txt`,
    record: `${hash}.hubcache.json`,
    lock: `${hash}.lock`,
    used: `${hash}.used`,
    tmp: (uid) => `${hash}.${uid}.tmp/`,
  };
}

export interface ObjectStoreOptions {
  /** The stale window: uploads of dead holders older than this are removed. */
  lockTimeoutMs: number;
  /**
   * Where entries are staged before upload. Default: a fresh temp dir under `tempRoot`, removed
   * afterwards. The two-tier cache passes the local entry's temp dir, which then keeps the model.
   */
  stagingDir?: string | undefined;
  /** Where that fresh temp dir is made (the temp dir of the caller's env). Default: os.tmpdir(). */
  tempRoot?: string | undefined;
}

/** A commit gives up when another writer changes the entry this many times under it. */
const MAX_PUBLISH_ATTEMPTS = 3;

interface ObjectStaged extends Staged {
  /** Set once files were uploaded under the temp prefix (cleanup removes what is left there). */
  uploaded: boolean;
}

export class ObjectEntryStore implements EntryStore {
  readonly location: string;

  constructor(
    readonly storage: Storage,
    private readonly options: ObjectStoreOptions,
  ) {
    this.location = storage.location;
  }

  locationOf(hash: string): string {
    return this.storage.locationOf(hash);
  }

  /**
   * Two requests for a hubcache entry (its record, a listing of its files), four for one written
   * by Python. Reads only.
   */
  async inspect(hash: string, options: { underLock?: boolean } = {}): Promise<EntryState> {
    const keys = objectEntryKeys(hash);
    const [record, files, used] = await Promise.all([
      this.readRecord(keys),
      listTree(this.storage, keys.dir),
      options.underLock ? undefined : this.storage.stat(keys.used).catch(() => undefined),
    ]);
    if (record) {
      const state = checkAgainstRecord(record, files);
      if (state.state !== "hit") return state;
      return { ...state, lastUsedMs: used?.modifiedMs ?? Date.parse(record.createdAt) };
    }
    if (files.length === 0) return { state: "missing" };
    const [descriptor, lock] = await Promise.all([
      this.storage.stat(keys.descriptor),
      options.underLock ? Promise.resolve(undefined) : this.storage.stat(keys.lock),
    ]);
    if (!descriptor) {
      return { state: "incomplete", reason: "files without a descriptor or record (an interrupted publish)" };
    }
    if (lock) return { state: "locked" };
    return { state: "hit", writer: "other", files, lastUsedMs: used?.modifiedMs ?? descriptor.modifiedMs };
  }

  /** The entry's record, when there is one this version understands (read by the mirror). */
  readEntryRecord(hash: string): Promise<ObjectRecord | undefined> {
    return this.readRecord(objectEntryKeys(hash));
  }

  /** The handle (redacted) the entry's descriptor names, when it has a readable one. */
  entryHandle(hash: string): Promise<string | undefined> {
    return this.descriptorHandle(objectEntryKeys(hash).descriptor);
  }

  private async readRecord(keys: ObjectEntryKeys): Promise<ObjectRecord | undefined> {
    let raw: string;
    try {
      raw = await text((await this.storage.read(keys.record)).body);
    } catch (error) {
      if (isObjectNotFound(error)) return undefined;
      throw error;
    }
    return parseRecord<ObjectRecord>(raw);
  }

  async tidyAfterHit(): Promise<void> {
    // Nothing to do: a lock beside a complete entry is taken over by the next miss's waiter.
  }

  lock(hash: string, options: Omit<WaitOptions, "entryReady">): Promise<HeldLock | undefined> {
    return acquireObjectLock(this.storage, objectEntryKeys(hash).lock, {
      ...options,
      entryReady: async () => (await this.inspect(hash)).state === "hit",
    });
  }

  /** Remove uploads that dead holders left: the one we took over from, and any older than the window. */
  async sweep(hash: string, lock: HeldLock, context: EntryContext): Promise<void> {
    const keys = objectEntryKeys(hash);
    const newest = new Map<string, number>();
    for await (const object of this.storage.list(`${hash}.`)) {
      const uid = /^[0-9a-f]{40}\.([0-9a-f]{32})\.tmp\//.exec(object.key)?.[1];
      if (uid === undefined || uid === lock.uid) continue;
      newest.set(uid, Math.max(newest.get(uid) ?? 0, object.modifiedMs ?? 0));
    }
    const now = Date.now();
    for (const [uid, modifiedMs] of newest) {
      if (uid === lock.takenOverFrom || now - modifiedMs > this.options.lockTimeoutMs) {
        await this.removePrefix(keys.tmp(uid));
        context.emit({ type: "orphan-removed", path: this.storage.locationOf(keys.tmp(uid)) });
      }
    }
  }

  async stage(hash: string, lock: HeldLock): Promise<Staged> {
    const tmpPrefix = objectEntryKeys(hash).tmp(lock.uid);
    const own = this.options.stagingDir === undefined;
    const dir =
      this.options.stagingDir ??
      (await fs.mkdtemp(path.join(this.options.tempRoot ?? os.tmpdir(), `hubcache-stage-${hash}-`)));
    const staged: ObjectStaged = {
      dir,
      uploaded: false,
      cleanup: async () => {
        if (staged.uploaded) await this.removePrefix(tmpPrefix).catch(() => undefined);
        if (own) await removeTree(dir);
      },
    };
    return staged;
  }

  /**
   * Upload, copy into `<hash>/`, write the descriptor, then the record, create-only. Without
   * create-only writes two holders are possible (a lock taken over from a slow holder): never
   * overwrite a published entry, and never return one that is not whole. An entry another writer
   * left broken is replaced once; an entry that keeps changing is an error.
   */
  async commit(
    hash: string,
    staged: Staged,
    lock: HeldLock,
    produced: Produced,
    context: EntryContext,
  ): Promise<CommitOutcome> {
    const keys = objectEntryKeys(hash);
    const record: ObjectRecord = { ...recordFields(produced), uid: lock.uid };
    const objectStaged = staged as ObjectStaged;
    let uploaded = false; // our files are under the temp prefix now
    let repaired = false;
    for (let attempt = 1; attempt <= MAX_PUBLISH_ATTEMPTS; attempt++) {
      if (!uploaded && (attempt === 1 || !(await this.recorded(keys)))) {
        objectStaged.uploaded = true;
        await this.upload(keys, staged.dir, produced.files, lock, context);
        uploaded = true;
      }
      if (await this.recorded(keys)) {
        const theirs = await this.inspect(hash, { underLock: true });
        if (theirs.state === "hit") {
          // Two tiers keep the model they staged locally: ours, not theirs, is what they return.
          const files = this.options.stagingDir === undefined ? theirs.files : undefined;
          return { outcome: "lost-to-another-writer", files };
        }
        // The other holder's entry is not whole (one of us removed files the other was
        // publishing), or its record cannot be read: replace it with ours, once.
        if (repaired) break;
        repaired = true;
        const reason = theirs.state === "incomplete" ? theirs.reason : "its record cannot be read";
        context.emit({
          type: "cache-incomplete",
          handle: context.handle,
          path: this.locationOf(hash),
          reason,
        });
        await this.remove(hash);
        continue;
      }
      await this.copyIntoPlace(keys, produced.files, lock);
      uploaded = false;
      if (await this.writeRecord(keys, produced.handle, record)) return { outcome: "published" };
      // Someone published first: look at their entry.
    }
    throw new HubcacheError(
      ErrorCode.IO,
      `The cache entry for ${produced.handle} at ${this.locationOf(hash)} keeps being changed by another writer.`,
      {
        handle: produced.handle,
        hint: "Another machine is rewriting this entry; resolve again in a moment.",
      },
    );
  }

  /** Is there a record (readable or not)? Then that entry is looked at before ours is published. */
  private async recorded(keys: ObjectEntryKeys): Promise<boolean> {
    return (await this.storage.stat(keys.record)) !== undefined;
  }

  private async upload(
    keys: ObjectEntryKeys,
    dir: string,
    files: TreeFile[],
    lock: HeldLock,
    context: EntryContext,
  ): Promise<void> {
    await uploadTree(this.storage, dir, files, keys.tmp(lock.uid), {
      signal: context.signal,
      onBytes: () => lock.touch(),
    });
  }

  private async copyIntoPlace(keys: ObjectEntryKeys, files: TreeFile[], lock: HeldLock): Promise<void> {
    const from = keys.tmp(lock.uid);
    await mapLimit(files, 4, async (file) => {
      await this.storage.publish(from + file.path, keys.dir + file.path);
      lock.touch();
    });
  }

  /** The descriptor, then the record (create-only where the store can): false if another record won. */
  private async writeRecord(keys: ObjectEntryKeys, handle: string, record: ObjectRecord): Promise<boolean> {
    await this.storage.write(keys.descriptor, descriptorText(handle), { contentType: "text/plain" });
    const createOnly = await probeCreateOnly(this.storage);
    return this.storage.write(keys.record, JSON.stringify(record), {
      ifAbsent: createOnly,
      contentType: "application/json",
    });
  }

  /**
   * The descriptor and record go first, so the entry stops counting at once (object stores cannot
   * rename a folder); then its files and its last-use marker. A crash in between leaves files with
   * neither, which count as incomplete (never as the entry) and which the next prune removes.
   */
  async remove(hash: string): Promise<void> {
    const keys = objectEntryKeys(hash);
    await this.storage.delete(keys.descriptor);
    await this.storage.delete(keys.record);
    await this.removePrefix(keys.dir);
    await this.storage.delete(keys.used);
  }

  private async removePrefix(prefix: string): Promise<void> {
    const objects = await listTree(this.storage, prefix);
    await mapLimit(objects, 8, (file) => this.storage.delete(prefix + file.path));
  }

  /** One listing of the whole store, then one read per entry (its record, or its descriptor). */
  async *list(): AsyncIterable<ListedEntry> {
    const seen = new Map<string, ListedObjects>();
    for await (const object of this.storage.list("")) {
      const match = /^([0-9a-f]{40})(\/|\.lock$|\.hubcache\.json$|\.descriptor\.txt$|\.used$)/.exec(
        object.key,
      );
      if (!match?.[1]) continue;
      const entry = seen.get(match[1]) ?? { files: [], newestMs: 0 };
      seen.set(match[1], entry);
      const kind = match[2];
      if (kind === "/") {
        entry.files.push({ path: object.key.slice(41), size: object.size });
        entry.newestMs = Math.max(entry.newestMs, object.modifiedMs ?? 0);
      } else if (kind === ".lock") entry.lock = true;
      else if (kind === ".hubcache.json") entry.record = true;
      else if (kind === ".descriptor.txt") entry.descriptorMs = object.modifiedMs ?? 0;
      else entry.usedMs = object.modifiedMs;
    }
    for (const hash of [...seen.keys()].sort()) {
      yield await this.listed(hash, seen.get(hash) as ListedObjects);
    }
  }

  private async listed(hash: string, seen: ListedObjects): Promise<ListedEntry> {
    const keys = objectEntryKeys(hash);
    const record = seen.record ? await this.readRecord(keys).catch(() => undefined) : undefined;
    let state: EntryState;
    if (record) state = checkAgainstRecord(record, seen.files);
    else if (seen.files.length === 0) state = { state: "missing" };
    else if (seen.descriptorMs === undefined || seen.lock) state = { state: "incomplete", reason: "" };
    else state = { state: "hit", writer: "other", files: seen.files };
    const ok = state.state === "hit";
    const writer = state.state === "hit" ? state.writer : undefined;
    const createdMs = record ? Date.parse(record.createdAt) : seen.descriptorMs;
    const handle =
      record?.handle ??
      (seen.descriptorMs === undefined ? undefined : await this.descriptorHandle(keys.descriptor));
    return {
      hash,
      state: ok ? "ok" : seen.lock ? "downloading" : "incomplete",
      writer,
      bytes: ok ? seen.files.reduce((sum, file) => sum + file.size, 0) : undefined,
      files: ok ? seen.files.length : undefined,
      createdMs,
      lastUsedMs: seen.usedMs ?? (record ? createdMs : Math.max(seen.descriptorMs ?? 0, seen.newestMs)),
      handle,
      archiveSha256: record?.archiveSha256,
    };
  }

  private async descriptorHandle(key: string): Promise<string | undefined> {
    try {
      const content = await text((await this.storage.read(key)).body);
      return /^Module: (.*)$/m.exec(content)?.[1]?.trim() || undefined;
    } catch {
      return undefined;
    }
  }

  async touch(hash: string): Promise<void> {
    await this.storage
      .write(objectEntryKeys(hash).used, new Date().toISOString(), { contentType: "text/plain" })
      .catch(() => undefined); // a read-only bucket records nothing
  }

  tryLock(name: string): Promise<HeldLock | undefined> {
    return tryAcquireObjectLock(this.storage, `${name}.lock`, { timeoutMs: this.options.lockTimeoutMs });
  }

  lockHolder(name: string): Promise<string | undefined> {
    return objectLockContent(this.storage, `${name}.lock`);
  }

  async readNote(name: string): Promise<string | undefined> {
    try {
      return await text((await this.storage.read(name)).body);
    } catch (error) {
      if (isObjectNotFound(error)) return undefined;
      throw error;
    }
  }

  async writeNote(name: string, content: string): Promise<void> {
    await this.storage.write(name, content, { contentType: "text/plain" });
  }

  /** Uploads no current lock owns and older than the stale window, and markers of removed entries. */
  async sweepDebris(context: EntryContext): Promise<string[]> {
    const uploads = new Map<string, number>(); // "<hash>.<uid>.tmp/" → newest modification
    const locks = new Map<string, string>(); // hash → the holder's uid
    const entries = new Set<string>();
    const used: string[] = [];
    for await (const object of this.storage.list("")) {
      const upload = /^([0-9a-f]{40})\.([0-9a-f]{32})\.tmp\//.exec(object.key);
      if (upload) {
        const prefix = upload[0];
        uploads.set(prefix, Math.max(uploads.get(prefix) ?? 0, object.modifiedMs ?? 0));
        continue;
      }
      const named = /^([0-9a-f]{40})(\/|\.descriptor\.txt$|\.hubcache\.json$|\.lock$|\.used$)/.exec(
        object.key,
      );
      if (!named?.[1]) continue;
      if (named[2] === ".used") used.push(named[1]);
      else entries.add(named[1]);
      if (named[2] === ".lock") {
        const content = await objectLockContent(this.storage, object.key).catch(() => undefined);
        locks.set(named[1], parseLockContent(content ?? "").uid);
      }
    }
    const removed: string[] = [];
    const now = Date.now();
    for (const [prefix, newestMs] of uploads) {
      const [hash, uid] = prefix.split(".");
      if (hash === undefined || locks.get(hash) === uid || now - newestMs <= this.options.lockTimeoutMs) {
        continue;
      }
      await this.removePrefix(prefix);
      removed.push(this.storage.locationOf(prefix));
    }
    for (const hash of used.filter((name) => !entries.has(name))) {
      await this.storage.delete(objectEntryKeys(hash).used);
      removed.push(this.storage.locationOf(objectEntryKeys(hash).used));
    }
    for (const location of removed) context.emit({ type: "orphan-removed", path: location });
    return removed;
  }

  async entryFiles(hash: string): Promise<EntryFiles> {
    const keys = objectEntryKeys(hash);
    const [record, files] = await Promise.all([this.readRecord(keys), listTree(this.storage, keys.dir)]);
    return { record, files, open: async (file) => (await this.storage.read(keys.dir + file)).body };
  }

  /** Copy a published entry's files into a local directory (two tiers), reporting the bytes so far. */
  async copyInto(
    hash: string,
    files: TreeFile[],
    dir: string,
    options: { signal?: AbortSignal | undefined; onBytes?: (total: number) => void },
  ): Promise<number> {
    let total = 0;
    await downloadTree(this.storage, objectEntryKeys(hash).dir, files, dir, {
      signal: options.signal,
      onBytes: (n) => {
        total += n;
        options.onBytes?.(total);
      },
    });
    return total;
  }
}

/** What one listing of the store shows of an entry. */
interface ListedObjects {
  files: TreeFile[];
  newestMs: number;
  record?: boolean;
  lock?: boolean;
  descriptorMs?: number;
  usedMs?: number | undefined;
}

/** A hubcache entry counts when every file its record lists is there with its size. */
function checkAgainstRecord(record: ObjectRecord, files: TreeFile[]): EntryState {
  const present = new Map(files.map((file) => [file.path, file.size]));
  for (const file of record.files) {
    const size = present.get(file.path);
    if (size === undefined) return { state: "incomplete", reason: `${file.path} is missing` };
    if (size !== file.size) {
      return { state: "incomplete", reason: `${file.path} has ${size} bytes, expected ${file.size}` };
    }
  }
  return { state: "hit", writer: "hubcache", files: record.files };
}
