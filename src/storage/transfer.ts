/** Operations built on the Storage interface: folder checks, tree upload/download, capability probes. */
import { createReadStream, createWriteStream } from "node:fs";
import path from "node:path";
import { Transform, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import { makeDirs } from "../make-dirs.js";
import { newUid } from "../uid.js";
import { ErrorCode, HubcacheError } from "../errors.js";
import { checkKey } from "./location.js";
import type { Storage } from "./types.js";

export interface TreeFile {
  /** Path relative to the tree's root, "/"-separated. */
  path: string;
  size: number;
}

/** Run `fn` over `items` with at most `limit` running at once; the first failure rejects (after the rest settle). */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (failure === undefined && next < items.length) {
      const index = next++;
      try {
        results[index] = await fn(items[index] as T, index);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure) throw failure.error;
  return results;
}

/** Files that mark a model folder, tried where a folder cannot be listed (http), most likely first. */
const MODEL_MARKERS = ["model.json", "saved_model.pb", "saved_model.pbtxt", "tfhub_module.pb"];

/**
 * Does a folder (or a single object) exist at `key`? Object stores have no folders: a folder
 * exists when some object's key starts with "key/". Over http, which cannot list, the location
 * itself or one of the files that make a model folder must answer.
 */
export async function folderExists(storage: Storage, key: string): Promise<boolean> {
  if (storage.scheme === "http") {
    // A location naming a file (…/model.json) is checked itself; a folder by its marker files
    // (one HEAD in the common case), then as a URL of its own.
    const named = key || new URL(storage.location).pathname;
    if (/\.(json|pb|pbtxt)$/.test(named)) return (await storage.stat(key)) !== undefined;
    for (const marker of MODEL_MARKERS) {
      if (await storage.stat(key ? `${key}/${marker}` : marker)) return true;
    }
    return (await storage.stat(key)) !== undefined;
  }
  if (key && (await storage.stat(key))) return true;
  for await (const object of storage.list(key ? `${key}/` : "")) {
    void object;
    return true;
  }
  return false;
}

/** All objects under `prefix` ("/"-terminated), as a tree relative to it, in key order. */
export async function listTree(storage: Storage, prefix: string): Promise<TreeFile[]> {
  const files: TreeFile[] = [];
  for await (const object of storage.list(prefix)) {
    files.push({ path: object.key.slice(prefix.length), size: object.size });
  }
  return files;
}

/** Counts bytes going through, for progress. */
class Counter extends Transform {
  constructor(private readonly onBytes: (n: number) => void) {
    super();
  }
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.onBytes(chunk.length);
    callback(null, chunk);
  }
}

export interface TransferOptions {
  concurrency?: number | undefined;
  /** Called with the number of bytes just moved. */
  onBytes?: ((bytes: number) => void) | undefined;
  /** Called after each file. */
  onFile?: ((file: TreeFile) => void) | undefined;
  signal?: AbortSignal | undefined;
}

/** Upload local files `dir/<path>` to `<keyPrefix><path>`. */
export async function uploadTree(
  storage: Storage,
  dir: string,
  files: readonly TreeFile[],
  keyPrefix: string,
  options: TransferOptions = {},
): Promise<void> {
  await mapLimit(files, options.concurrency ?? 4, async (file) => {
    options.signal?.throwIfAborted();
    const body = createReadStream(path.join(dir, ...file.path.split("/")), { highWaterMark: 1 << 20 });
    const counted = body.pipe(new Counter((n) => options.onBytes?.(n)));
    body.on("error", (error) => counted.destroy(error));
    await storage.write(keyPrefix + file.path, counted, { contentLength: file.size });
    options.onFile?.(file);
  });
}

/**
 * Download `<keyPrefix><path>` for each file into `dir/<path>`, checking each size. Paths come
 * from a listing someone else wrote, so each is checked to stay inside `dir`.
 */
export async function downloadTree(
  storage: Storage,
  keyPrefix: string,
  files: readonly TreeFile[],
  dir: string,
  options: TransferOptions = {},
): Promise<void> {
  for (const file of files) checkKey(file.path);
  await mapLimit(files, options.concurrency ?? 4, async (file) => {
    options.signal?.throwIfAborted();
    const target = path.join(dir, ...file.path.split("/"));
    await makeDirs(path.dirname(target));
    const { body } = await storage.read(keyPrefix + file.path);
    let bytes = 0;
    await pipeline(
      body,
      new Counter((n) => {
        bytes += n;
        options.onBytes?.(n);
      }),
      createWriteStream(target, { flags: "wx" }),
      { signal: options.signal },
    );
    if (bytes !== file.size) {
      throw new HubcacheError(
        ErrorCode.CORRUPT,
        `${storage.locationOf(keyPrefix + file.path)} has ${bytes} bytes; the cache entry's record says ${file.size}.`,
        {
          hint: "The shared cache entry was changed while it was read, or is damaged; resolve again (it will be re-checked).",
        },
      );
    }
    options.onFile?.(file);
  });
}

const createOnlyProbes = new Map<string, Promise<boolean>>();

/**
 * Does this store honour create-only writes? Asked once per location and process: write a probe
 * object create-only twice; the second must be refused. Stores that answer 501 (OpenStack Swift)
 * or silently overwrite (s3rver, some emulators) get `false`.
 */
export function probeCreateOnly(storage: Storage): Promise<boolean> {
  let probe = createOnlyProbes.get(storage.location);
  if (!probe) {
    probe = (async () => {
      const key = `.hubcache-probe.${newUid()}`;
      try {
        if (!(await storage.write(key, "1", { ifAbsent: true }))) return false;
        return !(await storage.write(key, "2", { ifAbsent: true }));
      } catch (error) {
        if (error instanceof HubcacheError && error.code === ErrorCode.UNSUPPORTED) return false;
        throw error;
      } finally {
        await storage.delete(key).catch(() => undefined);
      }
    })();
    probe.catch(() => createOnlyProbes.delete(storage.location));
    createOnlyProbes.set(storage.location, probe);
  }
  return probe;
}
