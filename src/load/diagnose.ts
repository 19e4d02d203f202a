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
    return new HubcacheError(
      ErrorCode.INVALID_MODEL,
      `${name} has no model.json, so it is not a TF.js model. ${where}; it holds: ${shown || "nothing"}.`,
      {
        handle: facts.handle,
        hint: "load() reads TF.js models (model.json + weight files). Check the handle, or pass the path of the model's .json file.",
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
