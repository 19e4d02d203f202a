/**
 * A model source: where the files of one model are read from, by their path relative to the model's
 * folder. Everything that loads or describes a model (load, the IOHandler, hubFetch, info) reads
 * through this one interface, whether the files sit in a local folder (the cache, a local path), on
 * a TF Hub host read file by file (UNCOMPRESSED mode), or in an object store (gs://, s3://).
 */
import { createReadStream, promises as fs } from "node:fs";
import path from "node:path";
import { Readable, addAbortSignal } from "node:stream";
import { buffer } from "node:stream/consumers";
import { ErrorCode, HubcacheError, RestartRequired, abortedError, errnoCode } from "../errors.js";
import { type HubcacheEvent, emitter } from "../events.js";
import type { FetchFunction } from "../net/http-errors.js";
import { redactUrl } from "../redact.js";
import { type ResolvedSettings, resolveSettings } from "../settings.js";
import { isObjectNotFound } from "../storage/errors.js";
import { parseStorageLocation } from "../storage/location.js";
import { type StorageOptions, openStorage } from "../storage/open.js";
import { modelFilePath } from "./model-json.js";
import { type RemoteFile, openRemoteFile } from "./remote.js";

export interface ModelSource {
  /** The model's folder: a local directory or a URL. Shown in messages (URLs redacted). */
  readonly location: string;
  /** True when the files are on this machine (reading them makes no request). */
  readonly local: boolean;
  /** One file's bytes. A missing file throws a HubcacheError with code ERR_HUBCACHE_NOT_FOUND. */
  read(file: string, signal?: AbortSignal): Promise<Uint8Array>;
  /** One file as a stream of chunks (for big weight files). Missing: ERR_HUBCACHE_NOT_FOUND. */
  stream(file: string, signal?: AbortSignal): Promise<ReadableStream<Uint8Array>>;
  /** A file's size when it is known without fetching it (local files), else undefined. */
  size(file: string): Promise<number | undefined>;
  /** Every file with its size, when the source can list them (local folders). */
  list?(): Promise<{ path: string; size: number }[]>;
  /** Whether a file exists, without reading it (sources that can tell cheaply: object stores). */
  exists?(file: string): Promise<boolean>;
}

export interface SourceContext {
  /** The handle the model was asked for, for messages. */
  handle?: string | undefined;
}

function fileNotFound(
  file: string,
  location: string,
  context: SourceContext,
  cause?: unknown,
): HubcacheError {
  return new HubcacheError(ErrorCode.NOT_FOUND, `${file} was not found in ${location}.`, {
    handle: context.handle,
    hint: "Check the handle; a TF.js model folder holds model.json and the weight files it lists.",
    cause,
  });
}

function webStream(readable: Readable): ReadableStream<Uint8Array> {
  return Readable.toWeb(readable) as unknown as ReadableStream<Uint8Array>;
}

/** The model in a local folder. Paths are checked, and symlinks may not lead outside the folder. */
export function dirSource(dir: string, context: SourceContext = {}): ModelSource {
  const root = path.resolve(dir);
  let realRoot: Promise<string> | undefined;

  async function locate(file: string): Promise<string> {
    const segments = modelFilePath(file, { handle: context.handle, location: root });
    const full = path.join(root, ...segments);
    let real: string;
    try {
      real = await fs.realpath(full);
    } catch (error) {
      if (errnoCode(error) === "ENOENT" || errnoCode(error) === "ENOTDIR") {
        throw fileNotFound(file, root, context, error);
      }
      throw error;
    }
    realRoot ??= fs.realpath(root);
    const base = await realRoot;
    if (!real.startsWith(base.endsWith(path.sep) ? base : base + path.sep)) {
      throw new HubcacheError(
        ErrorCode.INVALID_MODEL,
        `${file} in ${root} is a link to a place outside the model's folder.`,
        { handle: context.handle, hint: "Refused so that nothing outside the model is read." },
      );
    }
    return real;
  }

  return {
    location: root,
    local: true,
    async read(file) {
      const full = await locate(file);
      try {
        return await fs.readFile(full);
      } catch (error) {
        if (errnoCode(error) === "ENOENT") throw fileNotFound(file, root, context, error);
        throw error;
      }
    },
    async stream(file) {
      const full = await locate(file);
      const handle = await fs.open(full, "r").catch((error: unknown) => {
        throw errnoCode(error) === "ENOENT" ? fileNotFound(file, root, context, error) : error;
      });
      return webStream(createReadStream(full, { fd: handle, autoClose: true, highWaterMark: 1 << 20 }));
    },
    async size(file) {
      return (await fs.stat(await locate(file))).size;
    },
    async list() {
      const out: { path: string; size: number }[] = [];
      const walk = async (folder: string, prefix: string): Promise<void> => {
        const entries = await fs.readdir(folder, { withFileTypes: true });
        entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
        for (const entry of entries) {
          const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
          const full = path.join(folder, entry.name);
          if (entry.isDirectory()) await walk(full, rel);
          else if (entry.isFile()) out.push({ path: rel, size: (await fs.stat(full)).size });
        }
      };
      await walk(root, "");
      return out;
    },
  };
}

export interface HttpSourceOptions extends SourceContext {
  /** A fetch to use instead of hubcache's HTTP client (as in resolve's `fetch` option). */
  fetch?: FetchFunction | undefined;
  signal?: AbortSignal | undefined;
  /** Network settings (timeouts, retries, proxy). Default: from the environment, as resolve does. */
  settings?: ResolvedSettings | undefined;
  /** Retry events and warnings. */
  onEvent?: ((event: HubcacheEvent) => void) | undefined;
}

const RESTARTS = 3;

/**
 * The model on an http(s) host, read file by file: `base + file + query`. This is how TF.js reads
 * weights: the query of the model.json URL (e.g. `?tfjs-format=file`) is carried to every file.
 * Redirects are followed (Kaggle answers each file with a signed storage URL), failures retried
 * and resumed like archive downloads; a missing file, an error status or a body shorter than its
 * Content-Length is an error, never silently short data.
 */
export function httpSource(base: string, query: string, options: HttpSourceOptions = {}): ModelSource {
  const folder = base.endsWith("/") ? base : `${base}/`;
  const location = `${folder}${query}`;
  const handle = options.handle ?? location;
  const emit = emitter(options.onEvent, undefined);
  let settings = options.settings;
  let warned = false;

  async function open(file: string, signal: AbortSignal | undefined): Promise<RemoteFile & { url: string }> {
    const segments = modelFilePath(file, { handle: options.handle, location: redactUrl(location) });
    const url = `${folder}${segments.map(encodeURIComponent).join("/")}${query}`;
    settings ??= resolveSettings(options.fetch ? { fetch: options.fetch } : {});
    if (settings.network.insecureTls && !options.fetch && !warned) {
      warned = true;
      emit({
        type: "warning",
        handle,
        message:
          "TFHUB_DISABLE_CERT_VALIDATION=true: TLS certificates are not checked, so anyone on the network path can substitute the model.",
      });
    }
    try {
      const remote = await openRemoteFile(url, {
        handle,
        settings,
        emit,
        fetch: options.fetch,
        signal: signal ?? options.signal,
      });
      return { ...remote, url };
    } catch (error) {
      if (error instanceof HubcacheError && (error.status === 404 || error.status === 410)) {
        throw fileNotFound(file, redactUrl(url), options, error);
      }
      throw error;
    }
  }

  function broken(file: string, url: string, cause: unknown, got?: number, expected?: number): HubcacheError {
    if (cause instanceof HubcacheError) return cause;
    return new HubcacheError(
      ErrorCode.TRUNCATED,
      got !== undefined && expected !== undefined
        ? `${file} from ${redactUrl(url)} ended after ${got} of ${expected} bytes.`
        : `${file} from ${redactUrl(url)} broke off and the host cannot resume it.`,
      { handle: options.handle, hint: "The connection was cut; try again.", cause },
    );
  }

  return {
    location,
    local: false,
    async read(file, signal) {
      for (let attempt = 0; ; attempt++) {
        const remote = await open(file, signal);
        let bytes: Buffer;
        try {
          bytes = await buffer(remote.stream);
        } catch (error) {
          // The host could not resume a broken body: start this file again, a few times.
          if (error instanceof RestartRequired && attempt < RESTARTS) continue;
          throw broken(file, remote.url, error);
        }
        if (remote.contentLength !== undefined && bytes.length !== remote.contentLength) {
          throw broken(file, remote.url, undefined, bytes.length, remote.contentLength);
        }
        return bytes;
      }
    },
    async stream(file, signal) {
      const remote = await open(file, signal);
      return chunkStream(remote.stream as AsyncIterable<Uint8Array>, (error) =>
        broken(file, remote.url, error),
      );
    },
    size: () => Promise.resolve(undefined),
  };
}

async function* oneChunk(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  yield bytes;
}

/** A web stream pulling from `chunks`; a failure is passed through `explain` first. */
function chunkStream(
  chunks: AsyncIterable<Uint8Array>,
  explain: (error: unknown) => unknown,
): ReadableStream<Uint8Array> {
  const iterator = chunks[Symbol.asyncIterator]();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const next: IteratorResult<Uint8Array, unknown> = await iterator.next();
        if (next.done === true) controller.close();
        else controller.enqueue(next.value);
      } catch (error) {
        controller.error(explain(error));
      }
    },
    async cancel() {
      await iterator.return?.();
    },
  });
}

/**
 * What an object store (gs://, s3://) must offer to serve a model. The remote-storage backends
 * fit this with a one-line adapter; `openModelStore` is where they are plugged in.
 */
export interface ObjectReader {
  /** The object's bytes, or undefined when it does not exist. */
  read(key: string, options?: { signal?: AbortSignal | undefined }): Promise<Uint8Array | undefined>;
  /** The object as a stream of chunks, or undefined when it does not exist. Default: `read`, in one chunk. */
  stream?(
    key: string,
    options?: { signal?: AbortSignal | undefined },
  ): Promise<AsyncIterable<Uint8Array> | undefined>;
  /** Whether the object exists, without reading it. */
  exists?(key: string): Promise<boolean>;
}

/** The model in an object store, under `prefix` (no trailing slash). */
export function storageSource(
  reader: ObjectReader,
  location: string,
  prefix: string,
  context: SourceContext = {},
): ModelSource {
  const folder = prefix.replace(/\/+$/, "");
  const keyOf = (file: string): string => {
    const segments = modelFilePath(file, { handle: context.handle, location });
    return folder ? `${folder}/${segments.join("/")}` : segments.join("/");
  };
  const read = async (file: string, signal?: AbortSignal): Promise<Uint8Array> => {
    const bytes = await reader.read(keyOf(file), { signal });
    if (bytes === undefined) throw fileNotFound(file, location, context);
    return bytes;
  };
  const source: ModelSource = {
    location,
    local: false,
    read,
    async stream(file, signal) {
      const key = keyOf(file);
      const chunks = reader.stream
        ? await reader.stream(key, { signal })
        : await reader.read(key, { signal }).then((bytes) => bytes && oneChunk(bytes));
      if (chunks === undefined) throw fileNotFound(file, location, context);
      return chunkStream(chunks, (error) => {
        if (error instanceof HubcacheError) return error;
        if (signal?.aborted) {
          return abortedError(context.handle, `Reading ${file} from ${location}`, error);
        }
        return new HubcacheError(
          ErrorCode.TRUNCATED,
          `${file} from ${location} broke off while it was read${error instanceof Error ? ` (${error.message})` : ""}.`,
          { handle: context.handle, hint: "The connection to the store was cut; try again.", cause: error },
        );
      });
    },
    size: () => Promise.resolve(undefined),
  };
  const exists = reader.exists?.bind(reader);
  if (exists) source.exists = (file) => exists(keyOf(file));
  return source;
}

/** Opens an object store for a gs:// or s3:// location. */
export type OpenModelStore = (location: string) => Promise<ObjectReader> | ObjectReader;

export interface LocationOptions extends HttpSourceOptions {
  /** How to reach gs:// and s3:// locations. Default: hubcache's storage layer (`openStorage`). */
  openStore?: OpenModelStore | undefined;
  /** Settings for the default gs:// and s3:// reader (environment, endpoints, credentials). */
  storage?: StorageOptions | undefined;
}

/** A model's folder (and the name of its model.json) at a location: a path, a URL, gs:// or s3://. */
export async function sourceForLocation(
  location: string,
  options: LocationOptions = {},
): Promise<{ source: ModelSource; modelFile: string }> {
  const objectMatch = /^(gs|s3):\/\/([^/]+)\/?(.*)$/.exec(location);
  if (objectMatch) {
    const prefix = objectMatch[3] ?? "";
    const [folder, modelFile] = prefix.endsWith(".json")
      ? [prefix.slice(0, prefix.lastIndexOf("/") + 1), prefix.slice(prefix.lastIndexOf("/") + 1)]
      : [prefix, "model.json"];
    return {
      source: storageSource(await openModelStore(location, options), location, folder, options),
      modelFile,
    };
  }
  if (/^https?:\/\//i.test(location)) {
    const url = new URL(location);
    const query = url.search;
    url.search = "";
    url.hash = "";
    const href = url.href;
    const cut = href.lastIndexOf("/") + 1;
    const last = href.slice(cut);
    const modelFile = last.endsWith(".json") ? decodeURIComponent(last) : "model.json";
    const base = last.endsWith(".json") ? href.slice(0, cut) : href;
    return { source: httpSource(base, query, options), modelFile };
  }
  return { source: dirSource(location, options), modelFile: "model.json" };
}

async function openModelStore(location: string, options: LocationOptions): Promise<ObjectReader> {
  if (options.openStore) return options.openStore(location);
  return storageReader(location, options.storage ?? {});
}

/** The default ObjectReader: the bucket of `location`, read through hubcache's storage layer. */
export async function storageReader(location: string, storageOptions: StorageOptions): Promise<ObjectReader> {
  const parsed = parseStorageLocation(location);
  if (parsed.scheme !== "s3" && parsed.scheme !== "gs") {
    throw new HubcacheError(
      ErrorCode.UNSUPPORTED,
      `${redactUrl(location)} is not a gs:// or s3:// location.`,
    );
  }
  const storage = await openStorage(`${parsed.scheme}://${parsed.bucket}`, storageOptions);
  const open = async (key: string, signal: AbortSignal | undefined): Promise<Readable | undefined> => {
    signal?.throwIfAborted();
    try {
      const { body } = await storage.read(key);
      if (signal) addAbortSignal(signal, body);
      return body;
    } catch (error) {
      if (isObjectNotFound(error)) return undefined;
      throw error;
    }
  };
  return {
    async read(key, options) {
      const body = await open(key, options?.signal);
      return body && new Uint8Array(await buffer(body));
    },
    async stream(key, options) {
      return open(key, options?.signal);
    },
    async exists(key) {
      return (await storage.stat(key)) !== undefined;
    },
  };
}
