/** The errors that explain why a folder cannot be loaded as a TF.js model, with what to do instead. */
import { ErrorCode, HubcacheError } from "../errors.js";
import type { FolderKind, LocatedModel } from "./locate.js";

export interface FolderFacts {
  handle: string | undefined;
  /** The folder that was looked at. */
  dir: string;
  /** The cache entry it belongs to, when it came through the cache. */
  cacheEntry?: string | undefined;
  requestedFormat?: LocatedModel["requestedFormat"];
  formatDetected?: boolean;
}

/** A clear error for a folder that is not a TF.js model, or undefined when it is one. */
export function folderError(folder: FolderKind, facts: FolderFacts): HubcacheError | undefined {
  const name = facts.handle ?? facts.dir;
  const where = facts.cacheEntry ? `It is cached at ${facts.dir}` : `It is at ${facts.dir}`;
  if (folder.kind === "saved-model") {
    const tf1 = folder.marker === "tfhub_module.pb";
    const what = tf1 ? "a TF1 Hub module (tfhub_module.pb)" : `a TensorFlow SavedModel (${folder.marker})`;
    const inputFormat = tf1 ? "tf_hub" : "tf_saved_model";
    const sameHandle =
      facts.requestedFormat === "saved-model" && facts.formatDetected
        ? ` If the host serves a TF.js version under this same handle, ask for it with modelFormat: "tfjs" (CLI: --format tfjs); entries are cached by handle, so delete ${facts.cacheEntry ?? facts.dir} first.`
        : "";
    return new HubcacheError(
      ErrorCode.SAVED_MODEL,
      `${name} is ${what}, not a TF.js model, so load() cannot run it. ${where}; resolve() gives you that folder for Python or other runtimes.`,
      {
        handle: facts.handle,
        hint:
          `Use the model's TF.js variant (tfhub.dev: a handle with /tfjs-model/; kaggle.com/models: the "TfJs" framework, .../tfJs/<variation>/<version>), ` +
          `or convert it once: pip install tensorflowjs && tensorflowjs_converter --input_format=${inputFormat} --output_format=tfjs_graph_model ${facts.dir} ./model-tfjs ` +
          `and load("./model-tfjs").${sameHandle}`,
      },
    );
  }
  if (folder.kind === "unknown") {
    const shown = folder.entries.slice(0, 8).join(", ") + (folder.entries.length > 8 ? ", ..." : "");
    const archive = folder.entries.find((entry) => /\.(tar|tar\.gz|tgz|zip)$/i.test(entry));
    return new HubcacheError(
      ErrorCode.INVALID_MODEL,
      `${name} has no model.json, so it is not a TF.js model. ${where}; it holds: ${shown || "nothing"}.`,
      {
        handle: facts.handle,
        hint:
          archive === undefined
            ? "load() reads TF.js models (model.json + weight files). Check the handle, or pass the path of the model's .json file."
            : `It holds an archive, ${archive}, which hubcache does not unpack in place: unpack it (tar -xf ${archive}) and pass the folder it makes, or give the archive's URL to have it downloaded and cached.`,
      },
    );
  }
  return undefined;
}

/** folderError for a located model: what its folder holds, and where it came from. */
export function locatedModelError(located: LocatedModel): HubcacheError | undefined {
  return folderError(located.folder, {
    handle: located.handle,
    dir: located.source.location,
    cacheEntry: located.cacheEntry,
    requestedFormat: located.requestedFormat,
    formatDetected: located.formatDetected,
  });
}

/** What the first bytes of a file say it is, when it is an archive. */
function archiveKind(head: Uint8Array): string | undefined {
  if (head[0] === 0x1f && head[1] === 0x8b) return "a gzip archive";
  if (head[0] === 0x50 && head[1] === 0x4b && head[2] === 0x03 && head[3] === 0x04) return "a zip archive";
  if (Buffer.from(head.subarray(257, 262)).toString("latin1") === "ustar") return "a tar archive";
  return undefined;
}

/**
 * A clear error for a local file given as a model that is no model.json: an archive (hubcache
 * uses local paths in place and never unpacks them), or any other file. Undefined when the file
 * may be a model.json (it starts with "{").
 */
export function localFileError(
  handle: string,
  filePath: string,
  head: Uint8Array,
): HubcacheError | undefined {
  const archive = archiveKind(head);
  if (archive !== undefined) {
    return new HubcacheError(
      ErrorCode.INVALID_MODEL,
      `${handle} is ${archive}, not a model folder: local paths are used in place, never unpacked.`,
      {
        handle,
        hint: `Unpack it and pass the folder (mkdir model && tar -xf ${filePath} -C model, then use ./model), or give the archive's http(s)://, gs:// or s3:// URL to have it downloaded and cached.`,
      },
    );
  }
  const text = Buffer.from(head)
    .toString("utf8")
    .replace(/^\uFEFF/, "")
    .trimStart();
  if (text.length === 0 || text.startsWith("{")) return undefined;
  return new HubcacheError(
    ErrorCode.INVALID_MODEL,
    `${handle} is a file that is not a TF.js model.json (it is not JSON).`,
    {
      handle,
      hint: "Pass the model's folder (the one that holds model.json and the weight files), or its model.json file.",
    },
  );
}
