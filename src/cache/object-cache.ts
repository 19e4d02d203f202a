/**
 * The TF Hub cache on object storage (TFHUB_CACHE_DIR=s3://… or gs://…, and the shared tier of
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
 * the descriptor only after the last copy, and removes it first when it repairs an entry, so its
 * own interrupted publishes never pass this rule either.
 */
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { text } from "node:stream/consumers";
import { ErrorCode, HubcacheError } from "../errors.js";
import type { EventListener } from "../events.js";
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
import { listTree as listLocalTree, removeTree } from "./fs-util.js";
import { descriptorText, handleHash } from "./layout.js";
import { acquireObjectLock } from "./object-lock.js";
import type { Downloader } from "./local-cache.js";

export const OBJECT_MANIFEST_VERSION = 1;

/** `<hash>.hubcache.json` on object storage. */
export interface ObjectManifest {
  version: typeof OBJECT_MANIFEST_VERSION;
  handle: string;
  /** The upload this entry was published from (`<hash>.<uid>.tmp/`). */
  uid: string;
  createdAt: string;
  bytes: number;
  archiveBytes: number;
  files: TreeFile[];
}

export interface ObjectEntryKeys {
  hash: string;
  /** Prefix of the model's files: "<hash>/". */
  dir: string;
  descriptor: string;
  manifest: string;
  lock: string;
  tmp(uid: string): string;
}

export function objectEntryKeys(handle: string): ObjectEntryKeys {
  const hash = handleHash(handle);
  return {
    hash,
    dir: `${hash}/`,
    descriptor: `${hash}.descriptor.txt`,
    manifest: `${hash}.hubcache.json`,
    lock: `${hash}.lock`,
    tmp: (uid) => `${hash}.${uid}.tmp/`,
  };
}

export type ObjectEntryState =
  | { state: "hit"; writer: "hubcache" | "other"; files: TreeFile[] }
  | { state: "missing" }
  /** Something is there that does not count; it must be removed before publishing. */
  | { state: "incomplete"; reason: string }
  /** Looks like Python's entry but a lock is held: maybe mid-copy; wait for the lock. */
  | { state: "locked" };

export interface ObjectEntry {
  /** The model folder's location, e.g. s3://bucket/cache/<hash>. */
  location: string;
  keys: ObjectEntryKeys;
  files: TreeFile[];
}

export interface EnsureObjectEntryOptions {
  handle: string;
  /** Never produce: a miss throws ERR_HUBCACHE_OFFLINE. */
  offline: boolean;
  lockTimeoutMs: number;
  emit: EventListener;
  signal?: AbortSignal | undefined;
  /**
   * Where `produce` writes the model. Default: a fresh temp dir, removed afterwards. Two-tier mode
   * passes the local cache's temp dir, which then already holds the model.
   */
  stagingDir?: string | undefined;
  /**
   * Where that fresh temp dir is made: the temp dir of the caller's `env` (TMPDIR, TEMP, TMP), so
   * an `env` option replaces process.env here too. Default: os.tmpdir().
   */
  tempRoot?: string | undefined;
  /** Publishing failures become warnings (two-tier mode: a read-only shared cache still serves hits). */
  bestEffortPublish?: boolean | undefined;
  /** Lock polling, for tests. */
  pollMs?: number | undefined;
}

export interface EnsureObjectEntryResult {
  entry: ObjectEntry;
  /** True when `produce` ran: the model is in the staging dir. */
  produced: boolean;
}

async function readManifest(storage: Storage, key: string): Promise<ObjectManifest | undefined> {
  let raw: string;
  try {
    raw = await text((await storage.read(key)).body);
  } catch (error) {
    if (isObjectNotFound(error)) return undefined;
    throw error;
  }
  try {
    const parsed = JSON.parse(raw) as Partial<ObjectManifest>;
    if (parsed.version !== OBJECT_MANIFEST_VERSION || !Array.isArray(parsed.files)) return undefined;
    return parsed as ObjectManifest;
  } catch {
    return undefined;
  }
}

/**
 * Is the entry usable? Two requests for a hubcache entry (its record, a listing of its files),
 * four for one written by Python. Reads only.
 */
export async function inspectObjectEntry(
  storage: Storage,
  keys: ObjectEntryKeys,
  options: { ignoreLock?: boolean } = {},
): Promise<ObjectEntryState> {
  const [manifest, files] = await Promise.all([
    readManifest(storage, keys.manifest),
    listTree(storage, keys.dir),
  ]);
  if (manifest) {
    const present = new Map(files.map((file) => [file.path, file.size]));
    for (const file of manifest.files) {
      const size = present.get(file.path);
      if (size === undefined) return { state: "incomplete", reason: `${file.path} is missing` };
      if (size !== file.size) {
        return { state: "incomplete", reason: `${file.path} has ${size} bytes, expected ${file.size}` };
      }
    }
    return { state: "hit", writer: "hubcache", files: manifest.files };
  }
  if (files.length === 0) return { state: "missing" };
  const [descriptor, lock] = await Promise.all([
    storage.stat(keys.descriptor),
    options.ignoreLock ? Promise.resolve(undefined) : storage.stat(keys.lock),
  ]);
  if (!descriptor) {
    return { state: "incomplete", reason: "files without a descriptor or record (an interrupted publish)" };
  }
  if (lock) return { state: "locked" };
  return { state: "hit", writer: "other", files };
}

/** In-process de-duplication: concurrent calls for one entry share one download. */
const inFlight = new Map<string, Promise<EnsureObjectEntryResult>>();

/**
 * Find the entry for `handle` in the object-storage cache, or make it: take the lock, run
 * `produce` into a local staging dir, upload, publish. Resolves to the entry and whether this
 * call produced it.
 */
export async function ensureObjectEntry(
  storage: Storage,
  handle: string,
  produce: Downloader,
  options: EnsureObjectEntryOptions,
): Promise<EnsureObjectEntryResult> {
  const keys = objectEntryKeys(handle);
  const entryOf = (files: TreeFile[]): ObjectEntry => ({
    location: storage.locationOf(keys.hash),
    keys,
    files,
  });
  const state = await inspectObjectEntry(storage, keys);
  if (state.state === "hit") {
    options.emit({ type: "cache-hit", handle, path: storage.locationOf(keys.hash), writer: state.writer });
    return { entry: entryOf(state.files), produced: false };
  }
  if (options.offline) {
    throw new HubcacheError(
      ErrorCode.OFFLINE,
      `Offline mode is on and ${handle} is not in the cache (${storage.location}).`,
      {
        handle,
        hint: "Resolve it once with network access (unset HUBCACHE_OFFLINE / drop --offline), or check the cache location.",
      },
    );
  }
  // Two-tier calls bring their own staging dir, so they are not shared; remote-only calls are.
  const shareKey = options.stagingDir === undefined ? storage.locationOf(keys.hash) : undefined;
  const running = shareKey === undefined ? undefined : inFlight.get(shareKey);
  if (running) return running;
  const work = produceEntry(storage, handle, keys, produce, options, entryOf);
  if (shareKey === undefined) return work;
  const shared = work.finally(() => inFlight.delete(shareKey));
  inFlight.set(shareKey, shared);
  return shared;
}

function isPermissionError(error: unknown): boolean {
  return (
    error instanceof HubcacheError &&
    (error.code === ErrorCode.FORBIDDEN ||
      error.code === ErrorCode.UNAUTHORIZED ||
      error.code === ErrorCode.NOT_WRITABLE ||
      error.code === ErrorCode.UNSUPPORTED)
  );
}

async function produceEntry(
  storage: Storage,
  handle: string,
  keys: ObjectEntryKeys,
  produce: Downloader,
  options: EnsureObjectEntryOptions,
  entryOf: (files: TreeFile[]) => ObjectEntry,
): Promise<EnsureObjectEntryResult> {
  const { emit } = options;
  const location = storage.locationOf(keys.hash);
  const ready = async (): Promise<TreeFile[] | undefined> => {
    const state = await inspectObjectEntry(storage, keys);
    return state.state === "hit" ? state.files : undefined;
  };

  let lock;
  try {
    lock = await acquireObjectLock(storage, keys.lock, {
      handle,
      timeoutMs: options.lockTimeoutMs,
      emit,
      signal: options.signal,
      pollMs: options.pollMs,
      entryReady: async () => (await ready()) !== undefined,
    });
  } catch (error) {
    if (!(options.bestEffortPublish && isPermissionError(error))) throw error;
    emit({
      type: "warning",
      handle,
      message: `Cannot write to the shared cache ${storage.location}: ${(error as Error).message}`,
    });
    return produceUnpublished(handle, produce, options, entryOf);
  }
  if (!lock) {
    const files = await ready();
    if (files) {
      emit({ type: "cache-hit", handle, path: location, writer: "hubcache" });
      return { entry: entryOf(files), produced: false };
    }
    throw new HubcacheError(
      ErrorCode.IO,
      `The cache entry for ${handle} at ${location} vanished while it was awaited.`,
      {
        handle,
        hint: "Someone deleted it; resolve again.",
      },
    );
  }

  const ownStaging = options.stagingDir === undefined;
  let staging: string | undefined = options.stagingDir;
  const tmpPrefix = keys.tmp(lock.uid);
  let uploaded = false;
  try {
    const state = await inspectObjectEntry(storage, keys, { ignoreLock: true });
    if (state.state === "hit") {
      emit({ type: "cache-hit", handle, path: location, writer: state.writer });
      return { entry: entryOf(state.files), produced: false };
    }
    if (state.state === "incomplete") {
      emit({ type: "cache-incomplete", handle, path: location, reason: state.reason });
      await removeEntry(storage, keys);
    }
    await removeOrphans(storage, keys, lock.uid, lock.takenOverFrom, options);

    const started = Date.now();
    if (ownStaging) {
      const root = options.tempRoot ?? os.tmpdir();
      staging = await fs.mkdtemp(path.join(root, `hubcache-stage-${keys.hash}-`));
    }
    const stagingDir = staging as string;
    const report = await produce(stagingDir, () => undefined);
    const files = await listLocalTree(stagingDir);
    if (files.length === 0) {
      throw new HubcacheError(ErrorCode.CORRUPT, `The archive of ${handle} holds no files.`, {
        handle,
        hint: "The host sent an empty model; check the handle.",
      });
    }
    const bytes = files.reduce((sum, file) => sum + file.size, 0);

    try {
      const manifest: ObjectManifest = {
        version: OBJECT_MANIFEST_VERSION,
        handle,
        uid: lock.uid,
        createdAt: new Date().toISOString(),
        bytes,
        archiveBytes: report.archiveBytes,
        files,
      };
      // Without create-only writes two holders are possible (a lock taken over from a slow
      // holder): never overwrite a published entry, and never return one that is not whole.
      const keepsChanging = (): HubcacheError =>
        new HubcacheError(
          ErrorCode.IO,
          `The cache entry for ${handle} at ${location} keeps being changed by another writer.`,
          { handle, hint: "Another machine is rewriting this entry; resolve again in a moment." },
        );
      let staged = false; // our files are under the temp prefix
      let repaired = false;
      for (let attempt = 1; ; attempt++) {
        if (attempt > 3) throw keepsChanging();
        // Is there a record already (readable or not)? Then look at that entry before publishing ours.
        const recorded = async (): Promise<boolean> => (await storage.stat(keys.manifest)) !== undefined;
        if (!staged && (attempt === 1 || !(await recorded()))) {
          uploaded = true;
          await uploadTree(storage, stagingDir, files, tmpPrefix, { signal: options.signal });
          staged = true;
        }
        if (await recorded()) {
          const state = await inspectObjectEntry(storage, keys, { ignoreLock: true });
          if (state.state === "hit") {
            emit({ type: "publish-lost", handle, path: location });
            return { entry: entryOf(ownStaging ? state.files : files), produced: true };
          }
          // The other holder's entry is not whole (one of us removed files the other was
          // publishing), or its record cannot be read: replace it with ours, once.
          if (repaired) throw keepsChanging();
          repaired = true;
          const reason = state.state === "incomplete" ? state.reason : "its record cannot be read";
          emit({ type: "cache-incomplete", handle, path: location, reason });
          await removeEntry(storage, keys);
          continue;
        }
        await mapLimit(files, 4, (file) => storage.publish(tmpPrefix + file.path, keys.dir + file.path));
        staged = false;
        await storage.write(keys.descriptor, descriptorText(handle), { contentType: "text/plain" });
        const createOnly = await probeCreateOnly(storage);
        const won = await storage.write(keys.manifest, JSON.stringify(manifest), {
          ifAbsent: createOnly,
          contentType: "application/json",
        });
        if (!won) continue; // someone published first: look at their entry
        emit({
          type: "published",
          handle,
          path: location,
          bytes,
          files: files.length,
          ms: Date.now() - started,
        });
        break;
      }
    } catch (error) {
      if (!(options.bestEffortPublish && isPermissionError(error))) throw error;
      emit({
        type: "warning",
        handle,
        message: `Cannot publish to the shared cache ${storage.location}: ${(error as Error).message}`,
      });
    }
    return { entry: entryOf(files), produced: true };
  } finally {
    if (uploaded) await removePrefix(storage, tmpPrefix).catch(() => undefined);
    if (ownStaging && staging !== undefined) await removeTree(staging).catch(() => undefined);
    await lock.release().catch(() => undefined);
  }
}

/** A shared cache we cannot write to: produce locally, publish nothing. */
async function produceUnpublished(
  handle: string,
  produce: Downloader,
  options: EnsureObjectEntryOptions,
  entryOf: (files: TreeFile[]) => ObjectEntry,
): Promise<EnsureObjectEntryResult> {
  if (options.stagingDir === undefined) {
    throw new HubcacheError(ErrorCode.NOT_WRITABLE, `The cache for ${handle} cannot be written.`, { handle });
  }
  await produce(options.stagingDir, () => undefined);
  return { entry: entryOf(await listLocalTree(options.stagingDir)), produced: true };
}

async function removePrefix(storage: Storage, prefix: string): Promise<void> {
  const objects = await listTree(storage, prefix);
  await mapLimit(objects, 8, (file) => storage.delete(prefix + file.path));
}

/** Remove an entry that does not count. The descriptor goes first: see the module comment. */
async function removeEntry(storage: Storage, keys: ObjectEntryKeys): Promise<void> {
  await storage.delete(keys.descriptor);
  await storage.delete(keys.manifest);
  await removePrefix(storage, keys.dir);
}

/**
 * While holding the lock, remove uploads that dead holders left: the one we took over from, and
 * any temp prefix of this entry not written to for the lock timeout.
 */
async function removeOrphans(
  storage: Storage,
  keys: ObjectEntryKeys,
  ownUid: string,
  takenOverFrom: string | undefined,
  options: EnsureObjectEntryOptions,
): Promise<void> {
  const newest = new Map<string, number>();
  for await (const object of storage.list(`${keys.hash}.`)) {
    const match = /^[0-9a-f]{40}\.([0-9a-f]{32})\.tmp\//.exec(object.key);
    if (!match || match[1] === ownUid) continue;
    const uid = match[1] as string;
    newest.set(uid, Math.max(newest.get(uid) ?? 0, object.modifiedMs ?? 0));
  }
  const now = Date.now();
  for (const [uid, modifiedMs] of newest) {
    if (uid === takenOverFrom || now - modifiedMs > options.lockTimeoutMs) {
      await removePrefix(storage, keys.tmp(uid));
      options.emit({ type: "orphan-removed", path: storage.locationOf(keys.tmp(uid)) });
    }
  }
}

/** Copy a published entry's files into a local directory (two-tier mode), reporting progress. */
export async function downloadObjectEntry(
  storage: Storage,
  entry: ObjectEntry,
  dir: string,
  options: {
    handle: string;
    emit: EventListener;
    signal?: AbortSignal | undefined;
    onBytes?: (total: number) => void;
  },
): Promise<number> {
  let total = 0;
  await downloadTree(storage, entry.keys.dir, entry.files, dir, {
    signal: options.signal,
    onBytes: (n) => {
      total += n;
      options.onBytes?.(total);
    },
  });
  return total;
}
