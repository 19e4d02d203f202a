/**
 * The mirror's view of its cache: the files of a cached model wherever the cache is (a local
 * cache dir, two tiers, or `--cache-dir s3://…` / `gs://…`), and the handle an entry's descriptor
 * names (for `/_files/<hash>`). The bucket's Storage is opened once, on first use; a bucket entry
 * read a moment ago serves the next requests while its record is unchanged (recentFiles).
 */
import path from "node:path";
import { ObjectEntryStore, objectEntryKeys } from "../cache/object-store.js";
import type { ResolveOptions } from "../settings.js";
import { isRemoteLocation } from "../storage/location.js";
import { openStorage } from "../storage/open.js";
import type { Storage } from "../storage/types.js";
import { bucketModelFiles } from "./bucket-files.js";
import { descriptorHandle } from "./listing.js";
import { localModelFiles } from "./local-files.js";
import type { ModelFiles } from "./model-files.js";

export interface CachedModels {
  /** The model of the entry `hash`, at `location` (where resolve said it is cached). */
  filesAt(location: string, hash: string): Promise<ModelFiles>;
  /**
   * The files of the bucket entry `hash` if they were read in the last few seconds and its record
   * is still the same object (one HEAD): then the entry is as it was, and needs no full check.
   * Undefined for a local cache (whose check is a few `stat` calls) and otherwise.
   */
  recentFiles(hash: string): Promise<ModelFiles | undefined>;
  /** The handle (redacted) the descriptor of the entry `hash` names, when it has one. */
  descriptorHandle(hash: string): Promise<string | undefined>;
}

/**
 * A bucket entry's files, as last read, serve the requests of this long while its record is
 * unchanged. A hubcache client asks for a model's files one request each, right after the list;
 * the full check of an entry in a bucket is a LIST of it, a HEAD and a GET (object-store.ts).
 */
const BUCKET_FILES_REUSE_MS = 10_000;

export function cachedModels(cacheDir: string, options: ResolveOptions): CachedModels {
  let storage: Promise<Storage> | undefined;
  const bucket = (): Promise<Storage> =>
    (storage ??= openStorage(cacheDir, { ...options.storage, env: options.env }).catch((error: unknown) => {
      storage = undefined; // not kept: the next request tries again
      throw error;
    }));
  const remote = isRemoteLocation(cacheDir);
  const recent = new Map<string, { files: ModelFiles; recordVersion: string; until: number }>();
  const bucketFiles = async (hash: string): Promise<ModelFiles> => {
    const storage = await bucket();
    const record = await storage.stat(objectEntryKeys(hash).record);
    const files = await bucketModelFiles(storage, hash);
    const now = Date.now();
    for (const [key, entry] of recent) if (entry.until <= now) recent.delete(key);
    // Read after the stat: a record rewritten in between has another version next time.
    if (record?.version !== undefined) {
      recent.set(hash, { files, recordVersion: record.version, until: now + BUCKET_FILES_REUSE_MS });
    }
    return files;
  };
  return {
    filesAt: async (location, hash) =>
      isRemoteLocation(location) ? bucketFiles(hash) : localModelFiles(location, hash),
    recentFiles: async (hash) => {
      const known = recent.get(hash);
      if (!remote || !known || known.until <= Date.now()) return undefined;
      const record = await (await bucket()).stat(objectEntryKeys(hash).record);
      return record?.version === known.recordVersion ? known.files : undefined;
    },
    descriptorHandle: async (hash) =>
      remote
        ? new ObjectEntryStore(await bucket(), { lockTimeoutMs: 0 }).entryHandle(hash)
        : descriptorHandle(path.join(cacheDir, `${hash}.descriptor.txt`)),
  };
}
