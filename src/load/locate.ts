/**
 * From a handle to the model's files: through the cache (compressed mode), in place (local paths),
 * or straight from the host (UNCOMPRESSED mode). The result is a ModelSource plus what kind of
 * model the folder holds, so `load` and `info` share one way of finding a model.
 */
import { promises as fs } from "node:fs";
import path from "node:path";
import { ErrorCode, HubcacheError } from "../errors.js";
import { localFileError } from "./diagnose.js";
import { type ModelFormat, appendFormatQuery, parseHandle } from "../handle.js";
import { resolve } from "../resolve.js";
import { type ResolveOptions, resolveSettings } from "../settings.js";
import { statLocalPath } from "../sources/local-path.js";
import { type ModelSource, type OpenModelStore, dirSource, sourceForLocation } from "./source.js";
import { mirrorRoute, mirrorSettings, routeFetch } from "../net/route.js";

export interface LocateOptions extends ResolveOptions {
  /**
   * How to read gs:// and s3:// model folders in place (an object store reader). Default:
   * hubcache's storage layer, with the `storage` and `env` options.
   */
  openStore?: OpenModelStore;
}

/** What a model folder holds, judged from its files (local folders, and object-store folders). */
export type FolderKind =
  { kind: "tfjs" } | { kind: "saved-model"; marker: string } | { kind: "unknown"; entries: string[] };

export interface LocatedModel {
  handle: string;
  source: ModelSource;
  /** The model.json's path inside the source (normally "model.json"). */
  modelFile: string;
  /** What the folder holds. Remote sources that cannot tell cheaply (http) are assumed to be TF.js. */
  folder: FolderKind;
  /** The cache entry's directory, when the model came through the cache. */
  cacheEntry: string | undefined;
  /** Which archive was asked of the host ("tfjs" or "saved-model"), for http handles. */
  requestedFormat: Exclude<ModelFormat, "auto"> | undefined;
  /** Whether `requestedFormat` came from the URL (true) or from the modelFormat option. */
  formatDetected: boolean;
}

const SAVED_MODEL_MARKERS = ["saved_model.pb", "saved_model.pbtxt", "tfhub_module.pb"];

/** Names a packer adds that are not part of the model (macOS metadata). */
const isNoise = (name: string): boolean => name.startsWith(".") || name === "__MACOSX";

/**
 * Where in `dir` the model is: the folder itself, or its one wrapping folder when the archive put
 * everything under a single top-level directory (model.json or a SavedModel not at the root).
 */
export async function findModelFolder(
  dir: string,
): Promise<{ dir: string; modelFile: string; folder: FolderKind }> {
  const look = async (
    folder: string,
  ): Promise<{ kind: FolderKind; onlyDir: string | undefined; entries: string[] }> => {
    const entries = await fs.readdir(folder, { withFileTypes: true });
    const names = new Set(entries.map((e) => e.name));
    if (names.has("model.json")) return { kind: { kind: "tfjs" }, onlyDir: undefined, entries: [] };
    const marker = SAVED_MODEL_MARKERS.find((m) => names.has(m));
    if (marker) return { kind: { kind: "saved-model", marker }, onlyDir: undefined, entries: [] };
    const visible = entries.filter((e) => !isNoise(e.name));
    const only = visible.length === 1 && visible[0]?.isDirectory() ? visible[0].name : undefined;
    const listed = visible.map((e) => (e.isDirectory() ? `${e.name}/` : e.name)).sort();
    return { kind: { kind: "unknown", entries: listed }, onlyDir: only, entries: listed };
  };
  const top = await look(dir);
  if (top.kind.kind === "unknown" && top.onlyDir !== undefined) {
    const inner = path.join(dir, top.onlyDir);
    const nested = await look(inner);
    if (nested.kind.kind !== "unknown") return { dir: inner, modelFile: "model.json", folder: nested.kind };
  }
  return { dir, modelFile: "model.json", folder: top.kind };
}

/** Find the files of the model a handle names (downloading it into the cache in compressed mode). */
export async function locateModel(handle: string, options: LocateOptions = {}): Promise<LocatedModel> {
  const settings = resolveSettings(options);
  const requested = options.modelFormat ?? "auto";
  const parsed = parseHandle(handle, { loadFormat: settings.loadFormat, modelFormat: requested });
  // Through a mirror (HUBCACHE_MIRROR), files read in place come from it too, with its token.
  const mirror = mirrorSettings(options);
  const route = mirror && mirrorRoute(mirror);
  const fetch = route && mirror.token ? routeFetch(options.fetch ?? globalThis.fetch, route) : options.fetch;
  const context = {
    handle,
    fetch,
    signal: options.signal,
    openStore: options.openStore,
    storage: { ...options.storage, env: options.env, fetch, signal: options.signal },
    settings,
    onEvent: options.onEvent,
  };
  const httpFormat = parsed.kind === "http-archive" || parsed.kind === "http-uncompressed";
  const base = {
    handle,
    requestedFormat: httpFormat ? parsed.modelFormat : undefined,
    formatDetected: requested === "auto",
  };

  switch (parsed.kind) {
    case "path":
      return { ...base, ...(await localModel(handle, parsed.path)), cacheEntry: undefined };
    case "object-folder":
      return { ...base, ...(await remoteModel(handle, context)), cacheEntry: undefined };
    case "http-uncompressed":
      if (parsed.modelFormat === "tfjs") {
        // TF.js's own remote read: model.json?tfjs-format=file, each weight file with the same query.
        if (settings.offline) {
          throw new HubcacheError(
            ErrorCode.OFFLINE,
            `Offline mode is on, and UNCOMPRESSED mode reads ${handle} from the host.`,
            { handle, hint: "Use COMPRESSED mode with a cached model, or go online." },
          );
        }
        const fileUrl = route ? route.rewrite(tfjsFileUrl(handle)) : tfjsFileUrl(handle);
        const { source, modelFile } = await sourceForLocation(fileUrl, context);
        return { ...base, source, modelFile, folder: { kind: "tfjs" }, cacheEntry: undefined };
      }
      break;
    case "http-archive":
    case "object-archive":
      break;
  }
  // Everything else goes through resolve: a cache entry (compressed), or the location the host
  // names (UNCOMPRESSED), which may be remote.
  const location = await resolve(handle, options);
  if (location.includes("://")) {
    return { ...base, ...(await remoteModel(location, context)), cacheEntry: undefined };
  }
  const found = await findModelFolder(location);
  return {
    ...base,
    source: dirSource(found.dir, { handle }),
    modelFile: found.modelFile,
    folder: found.folder,
    cacheEntry: location,
  };
}

/**
 * A model folder on remote storage. Object stores can say cheaply which files exist, so a
 * SavedModel there gets the same clear error as one on disk (TF Hub's UNCOMPRESSED mode and
 * bucket caches mostly hold SavedModels); anything else is taken for TF.js, and reading its
 * model.json then says what is missing, and where.
 */
async function remoteModel(
  location: string,
  context: Parameters<typeof sourceForLocation>[1],
): Promise<{ source: ModelSource; modelFile: string; folder: FolderKind }> {
  const { source, modelFile } = await sourceForLocation(location, context);
  const tfjs = { source, modelFile, folder: { kind: "tfjs" } as FolderKind };
  if (modelFile !== "model.json" || !source.exists || (await source.exists(modelFile))) return tfjs;
  for (const marker of SAVED_MODEL_MARKERS) {
    if (await source.exists(marker)) return { source, modelFile, folder: { kind: "saved-model", marker } };
  }
  return tfjs;
}

/** `handle/model.json?tfjs-format=file`, exactly what TF.js's `fromTFHub` asks for. */
export function tfjsFileUrl(handle: string): string {
  const hashIndex = handle.indexOf("#");
  const noFragment = hashIndex === -1 ? handle : handle.slice(0, hashIndex);
  const queryIndex = noFragment.indexOf("?");
  const pathPart = queryIndex === -1 ? noFragment : noFragment.slice(0, queryIndex);
  const query = queryIndex === -1 ? "" : noFragment.slice(queryIndex);
  const folder = pathPart.endsWith("/") ? pathPart : `${pathPart}/`;
  return appendFormatQuery(`${folder}model.json${query}`, "tfjs-format", "file");
}

async function localModel(
  handle: string,
  localPath: string,
): Promise<{ source: ModelSource; modelFile: string; folder: FolderKind }> {
  const stat = await statLocalPath(handle, localPath);
  if (stat.isFile()) {
    // A path to the model's JSON file itself (e.g. a package's movenet-lightning.json), unless
    // its first bytes say it is an archive or no JSON at all.
    const problem = localFileError(handle, localPath, await readHead(localPath));
    if (problem) throw problem;
    return {
      source: dirSource(path.dirname(localPath), { handle }),
      modelFile: path.basename(localPath),
      folder: { kind: "tfjs" },
    };
  }
  const found = await findModelFolder(localPath);
  return { source: dirSource(found.dir, { handle }), modelFile: found.modelFile, folder: found.folder };
}

/** The first 512 bytes of a file (a tar header's size: enough to tell an archive). */
async function readHead(filePath: string): Promise<Uint8Array> {
  const file = await fs.open(filePath, "r");
  try {
    const { buffer, bytesRead } = await file.read(Buffer.alloc(512), 0, 512, 0);
    return buffer.subarray(0, bytesRead);
  } finally {
    await file.close();
  }
}
