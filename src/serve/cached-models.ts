/**
 * The mirror's view of its cache: the files of a cached model wherever the cache is (a local
 * cache dir, two tiers, or `--cache-dir s3://…` / `gs://…`), and the handle an entry's descriptor
 * names (for `/_files/<hash>`). The bucket's Storage is opened once, on first use.
 */
import path from "node:path";
import { ObjectEntryStore } from "../cache/object-store.js";
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
  /** The handle (redacted) the descriptor of the entry `hash` names, when it has one. */
  descriptorHandle(hash: string): Promise<string | undefined>;
}

export function cachedModels(cacheDir: string, options: ResolveOptions): CachedModels {
  let storage: Promise<Storage> | undefined;
  const bucket = (): Promise<Storage> =>
    (storage ??= openStorage(cacheDir, { ...options.storage, env: options.env }).catch((error: unknown) => {
      storage = undefined; // not kept: the next request tries again
      throw error;
    }));
  const remote = isRemoteLocation(cacheDir);
  return {
    filesAt: async (location, hash) =>
      isRemoteLocation(location) ? bucketModelFiles(await bucket(), hash) : localModelFiles(location, hash),
    descriptorHandle: async (hash) =>
      remote
        ? new ObjectEntryStore(await bucket(), { lockTimeoutMs: 0 }).entryHandle(hash)
        : descriptorHandle(path.join(cacheDir, `${hash}.descriptor.txt`)),
  };
}
