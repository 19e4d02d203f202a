/**
 * `ioHandler(handle)`: a TF.js IOHandler that reads a model from browser storage when a whole,
 * verified copy is there (no request at all), and otherwise downloads it once per browser (one tab
 * or worker downloads under a Web Lock; the others wait and read its copy), stores it whole, and
 * hands TF.js the same ModelArtifacts its own http loader would.
 */
import { ErrorCode, HubcacheError } from "../errors.js";
import { type BrowserEventListener, emitter } from "./events.js";
import { canonicalHandle, fileUrl, mirrorBase } from "./handle.js";
import { lockName, withModelLock } from "./lock.js";
import { type DownloadedModel, checkedModel, downloadModel } from "./download.js";
import type { FetchLike } from "./net.js";
import {
  type FileBytes,
  deleteStored,
  readStored,
  roomFor,
  storageAvailable,
  storeError,
  touchStored,
  writeStored,
} from "./store.js";
import type { HubcacheIOHandler, LoadReport, ModelArtifacts } from "./types.js";
import { artifactsOf } from "./artifacts.js";

export interface IOHandlerOptions {
  /** A `hubcache serve` mirror: files are read as `<mirror>/<host>/<path>/<file>?tfjs-format=file`. */
  mirror?: string;
  /** The mirror's token (`hubcache serve --token`), sent as `Authorization: Bearer` to the mirror only. */
  token?: string;
  /** Keep the model in browser storage (default true). false: always from the network, nothing written. */
  store?: boolean;
  /** Ask the browser to keep this origin's storage (`navigator.storage.persist()`); default false. */
  persist?: boolean;
  /** How a stored copy is checked before use: "sha-256" of every file (default) or sizes only. */
  verify?: "sha-256" | "size";
  /** Check `navigator.storage.estimate()` before storing (default true). */
  checkQuota?: boolean;
  /**
   * Called for each downloaded file before anything is stored: throw to refuse it (the load fails,
   * nothing is stored). For checks of your own, e.g. against digests published elsewhere.
   */
  verifyFile?: (file: { path: string; bytes: Uint8Array; etag: string | undefined }) => void | Promise<void>;
  /** Files downloaded at once (default 4). */
  concurrency?: number;
  fetch?: FetchLike;
  signal?: AbortSignal;
  onEvent?: BrowserEventListener;
  /** The fraction (0 to 1) of the model's bytes downloaded, like TF.js's onProgress. */
  onProgress?: (fraction: number) => void;
}

let persistAsked: Promise<boolean> | undefined;

function askPersist(emit: BrowserEventListener): void {
  if (persistAsked !== undefined || typeof navigator === "undefined" || !navigator.storage?.persist) return;
  persistAsked = navigator.storage.persist().catch(() => false);
  void persistAsked.then((granted) => emit({ type: "persist", granted }));
}

export function ioHandler(handle: string, options: IOHandlerOptions = {}): HubcacheIOHandler {
  const canonical = canonicalHandle(handle);
  if (options.mirror !== undefined) mirrorBase(options.mirror);
  let lastLoad: LoadReport | undefined;
  return {
    handle: canonical,
    get lastLoad() {
      return lastLoad;
    },
    load: async () => {
      const started = performance.now();
      const { artifacts, report } = await loadModel(canonical, options);
      lastLoad = { ...report, ms: performance.now() - started };
      return artifacts;
    },
  };
}

interface Loaded {
  artifacts: ModelArtifacts;
  report: Omit<LoadReport, "ms">;
}

async function loadModel(handle: string, options: IOHandlerOptions): Promise<Loaded> {
  const emit = emitter(options.onEvent);
  const keep = options.store !== false && storageAvailable();
  if (keep && options.persist) askPersist(emit);
  if (keep) {
    const hit = await fromStorage(handle, options, emit, false);
    if (hit) return hit;
  }
  // Without storage to share a copy through, waiting for another tab's download gains nothing.
  const lock = keep
    ? withModelLock
    : <T>(_h: string, _s: unknown, _e: unknown, work: () => Promise<T>) => work();
  return lock(handle, options.signal, emit, async () => {
    if (keep) {
      const hit = await fromStorage(handle, options, emit, true);
      if (hit) return hit;
    }
    const model = await downloadModel(handle, {
      url: (file) => fileUrl(handle, file, options.mirror),
      headers:
        options.mirror !== undefined && options.token ? { authorization: `Bearer ${options.token}` } : {},
      fetch: options.fetch ?? ((input, init) => globalThis.fetch(input, init)),
      signal: options.signal,
      concurrency: options.concurrency ?? 4,
      verifyFile: options.verifyFile,
      emit,
      onProgress: options.onProgress,
    });
    const stored = options.store === false ? false : await store(handle, model, options, emit);
    return {
      artifacts: artifactsOf(model.json, model.weights),
      report: { from: "network", bytes: model.bytes, fetchedBytes: model.bytes, stored },
    };
  });
}

/**
 * The stored copy, if whole and valid. `repair` (only under the model's lock): an unusable copy
 * is removed and reported; without the lock it may be another tab's store in progress.
 */
async function fromStorage(
  handle: string,
  options: IOHandlerOptions,
  emit: BrowserEventListener,
  repair: boolean,
): Promise<Loaded | undefined> {
  const started = performance.now();
  let read: Awaited<ReturnType<typeof readStored>>;
  try {
    read = await readStored(handle, options.verify ?? "sha-256");
  } catch {
    // Storage that cannot be read (a browser in a mode without storage, an eviction racing us)
    // is a miss: the model comes from the network, and storing it reports its own failure.
    return undefined;
  }
  let problem = read.ok ? undefined : read.reason;
  if (read.ok) {
    try {
      const model = storedModel(handle, read.record.files[0]?.path ?? "", read.files);
      emit({ type: "cache-hit", handle, bytes: read.record.bytes, ms: performance.now() - started });
      void touchLater(handle, read.record);
      return {
        artifacts: model,
        report: { from: "storage", bytes: read.record.bytes, fetchedBytes: 0, stored: true },
      };
    } catch (error) {
      problem = error instanceof Error ? error.message : String(error);
    }
  }
  if (repair && problem !== undefined) {
    await deleteStored(handle);
    emit({ type: "cache-invalid", handle, reason: problem });
  }
  return undefined;
}

function touchLater(handle: string, record: Parameters<typeof touchStored>[0]): Promise<void> {
  // Only when no tab holds the model's lock: a download or a removal in progress wins.
  if (typeof navigator === "undefined" || !navigator.locks) return touchStored(record).catch(() => undefined);
  return navigator.locks
    .request(lockName(handle), { ifAvailable: true }, async (lock) => {
      if (lock) await touchStored(record);
    })
    .then(
      () => undefined,
      () => undefined,
    );
}

/** The artifacts of a stored model, its model.json checked against the files stored with it. */
function storedModel(handle: string, modelFile: string, files: Map<string, Uint8Array>): ModelArtifacts {
  const { json, weights } = checkedModel(handle, modelFile, files);
  return artifactsOf(json, weights);
}

/** Keep a downloaded model; never fails the load: problems become a "store-failed" event. */
async function store(
  handle: string,
  model: DownloadedModel,
  options: IOHandlerOptions,
  emit: BrowserEventListener,
): Promise<boolean> {
  const started = performance.now();
  const failed = (
    reason: "quota" | "error",
    error: HubcacheError,
    room?: { quota?: number | undefined; usage?: number | undefined },
  ) =>
    emit({
      type: "store-failed",
      handle,
      reason,
      code: error.code,
      message: error.message,
      bytes: model.bytes,
      ...room,
    });
  if (!storageAvailable()) {
    const error = new HubcacheError(
      ErrorCode.UNSUPPORTED,
      `Not storing ${handle}: this page has no Cache Storage.`,
      {
        handle,
        hint: "Cache Storage exists only in secure contexts: https://, http://localhost or http://127.0.0.1.",
      },
    );
    emit({
      type: "store-failed",
      handle,
      reason: "unavailable",
      code: error.code,
      message: error.message,
      bytes: model.bytes,
    });
    return false;
  }
  try {
    if (options.checkQuota !== false) {
      const room = await roomFor(model.bytes);
      if (!room.enough) {
        const error = new HubcacheError(
          ErrorCode.DISK_FULL,
          `Not storing ${handle} (${model.bytes} bytes): the browser's quota leaves ${Math.max(0, (room.quota ?? 0) - (room.usage ?? 0))} bytes.`,
          {
            handle,
            hint: "Free some of this site's storage (removeModel, clearModels), or ask for more with persist: true.",
          },
        );
        failed("quota", error, { quota: room.quota, usage: room.usage });
        return false;
      }
    }
    const files: FileBytes[] = await model.filesWithDigests();
    const record = await writeStored(handle, files);
    emit({ type: "stored", handle, bytes: record.bytes, ms: performance.now() - started });
    return true;
  } catch (error) {
    const coded = storeError(error, handle);
    failed(coded.code === ErrorCode.DISK_FULL ? "quota" : "error", coded);
    return false;
  }
}
