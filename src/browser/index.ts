/**
 * hubcache for browsers (`hubcache/browser`): TF Hub models downloaded once per browser, verified,
 * kept in Cache Storage, shared by every tab and worker of the site. One ES module with no imports;
 * TF.js stays the app's own:
 *
 *   import { ioHandler } from "hubcache/browser";
 *   const model = await tf.loadGraphModel(ioHandler("https://tfhub.dev/google/tfjs-model/..."));
 */
import { ErrorCode, HubcacheError } from "../errors.js";
import { canonicalHandle } from "./handle.js";
import { lockName } from "./lock.js";
import { deleteStored, storedHandles, storedRecords } from "./store.js";

export { ioHandler } from "./io-handler.js";
export type { IOHandlerOptions } from "./io-handler.js";
export type { HubcacheIOHandler, LoadReport, ModelArtifacts, WeightsManifestEntry } from "./types.js";
export { events } from "./events.js";
export type { BrowserEvent, BrowserEventListener } from "./events.js";
export { canonicalHandle, fileUrl } from "./handle.js";
export { HubcacheError, ErrorCode };

export interface CachedModel {
  handle: string;
  /** model.json and the weight files together. */
  bytes: number;
  storedAt: Date;
  /** Updated at most once a minute. */
  lastUsed: Date;
}

/** Every model kept whole in this site's browser storage. */
export async function cachedModels(): Promise<CachedModel[]> {
  const records = await storedRecords();
  return records.map((r) => ({
    handle: r.handle,
    bytes: r.bytes,
    storedAt: new Date(r.storedAt),
    lastUsed: new Date(r.lastUsed),
  }));
}

/** Run `work` holding the model's lock (waits for a download in progress in any tab). */
async function locked<T>(handle: string, work: () => Promise<T>): Promise<T> {
  const locks = typeof navigator === "undefined" ? undefined : navigator.locks;
  return locks ? locks.request(lockName(handle), () => work()) : work();
}

/** Remove one model (after any download of it in progress). True if it was stored. */
export async function removeModel(handle: string): Promise<boolean> {
  const canonical = canonicalHandle(handle);
  try {
    return await locked(canonical, () => deleteStored(canonical));
  } catch (error) {
    throw new HubcacheError(ErrorCode.IO, `Removing ${canonical} from browser storage failed.`, {
      handle: canonical,
      cause: error,
    });
  }
}

/** Remove every model hubcache stored for this site (complete or not). Returns how many. */
export async function clearModels(): Promise<number> {
  let removed = 0;
  for (const handle of await storedHandles()) {
    if (await locked(handle, () => deleteStored(handle))) removed++;
  }
  return removed;
}
