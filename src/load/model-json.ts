/**
 * TF.js `model.json`: parsing, validation and the facts hubcache needs about it (format, weight files,
 * expected byte counts). Pure: no I/O and no TensorFlow.js import.
 */
import { ErrorCode, HubcacheError } from "../errors.js";

/** The two kinds of TF.js model, as `model.json`'s `format` names them. */
export type TfjsModelFormat = "graph-model" | "layers-model";

export interface WeightEntry {
  name: string;
  shape: number[];
  dtype: string;
  quantization?: { dtype: string; [key: string]: unknown };
  [key: string]: unknown;
}

export interface WeightGroup {
  paths: string[];
  weights: WeightEntry[];
}

/** A parsed `model.json` (the fields hubcache reads; everything else is kept as is). */
export interface TfjsModelJson {
  format?: string;
  generatedBy?: string;
  convertedBy?: string | null;
  modelTopology?: unknown;
  weightsManifest?: WeightGroup[];
  signature?: unknown;
  userDefinedMetadata?: Record<string, unknown>;
  modelInitializer?: unknown;
  initializerSignature?: unknown;
  trainingConfig?: unknown;
  [key: string]: unknown;
}

export interface ModelContext {
  handle?: string | undefined;
  /** Where the model.json came from, for messages. */
  location: string;
}

function invalid(message: string, context: ModelContext, hint: string, cause?: unknown): HubcacheError {
  return new HubcacheError(ErrorCode.INVALID_MODEL, message, { handle: context.handle, hint, cause });
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

/** Parse and validate the bytes of a `model.json`. Weight paths are checked (see `modelFilePath`). */
export function parseModelJson(bytes: Uint8Array | string, context: ModelContext): TfjsModelJson {
  let json: unknown;
  try {
    json = JSON.parse(typeof bytes === "string" ? bytes : Buffer.from(bytes).toString("utf8"));
  } catch (cause) {
    throw invalid(
      `The model.json in ${context.location} is not valid JSON.`,
      context,
      "The download may be damaged, or this is not a TF.js model. Delete the cached entry and try again.",
      cause,
    );
  }
  if (!isRecord(json)) {
    throw invalid(
      `The model.json in ${context.location} is not a JSON object.`,
      context,
      "This is not a TF.js model.",
    );
  }
  if (json.modelTopology == null && json.weightsManifest == null) {
    throw invalid(
      `The model.json in ${context.location} has neither a modelTopology nor a weightsManifest.`,
      context,
      "This is not a TF.js model (a TF.js model.json has both).",
    );
  }
  if (json.weightsManifest != null) validateManifest(json.weightsManifest, context);
  return json;
}

function validateManifest(manifest: unknown, context: ModelContext): asserts manifest is WeightGroup[] {
  const bad = (what: string): HubcacheError =>
    invalid(
      `The weightsManifest of the model.json in ${context.location} is malformed: ${what}.`,
      context,
      "Re-convert the model with tensorflowjs_converter, or report it to the model's publisher.",
    );
  if (!Array.isArray(manifest)) throw bad("it is not an array");
  manifest.forEach((group: unknown, g) => {
    if (!isRecord(group)) throw bad(`group ${g} is not an object`);
    if (!Array.isArray(group.paths) || !group.paths.every((p) => typeof p === "string")) {
      throw bad(`group ${g} has no list of paths`);
    }
    if (!Array.isArray(group.weights)) throw bad(`group ${g} has no list of weights`);
    for (const weight of group.weights as unknown[]) {
      if (
        !isRecord(weight) ||
        typeof weight.name !== "string" ||
        typeof weight.dtype !== "string" ||
        !Array.isArray(weight.shape) ||
        !weight.shape.every((d) => Number.isInteger(d) && (d as number) >= 0)
      ) {
        throw bad(`group ${g} has a weight without a name, dtype or shape`);
      }
    }
    for (const file of group.paths) modelFilePath(file, context);
  });
}

/**
 * A model file's path, checked: relative, `/`-separated, no `..`, no empty segments, no backslash
 * or NUL, nothing absolute. `model.json` comes from the network, so its weight paths must never
 * reach outside the model's folder (on disk or on the host). Returns the segments ("." removed).
 */
export function modelFilePath(file: string, context: ModelContext): string[] {
  const segments = file.split("/").filter((s) => s !== ".");
  const unsafe =
    file.length === 0 ||
    file.startsWith("/") ||
    /[\\\0]/.test(file) ||
    /^[a-zA-Z]:/.test(file) ||
    segments.length === 0 ||
    segments.some((s) => s === "" || s === "..");
  if (unsafe) {
    throw new HubcacheError(
      ErrorCode.INVALID_MODEL,
      `The model in ${context.location} names the file "${file}", which is not a plain path inside the model's folder.`,
      {
        handle: context.handle,
        hint: "A TF.js model.json lists its weight files relative to itself (e.g. group1-shard1of1.bin). This model.json was refused so nothing outside its folder is read; do not use it.",
      },
    );
  }
  return segments;
}

/** 'graph-model' or 'layers-model', from `format`, else from the topology's shape (old converters). */
export function detectTfjsFormat(json: TfjsModelJson): TfjsModelFormat | undefined {
  if (json.format === "graph-model" || json.format === "layers-model") return json.format;
  const topology = json.modelTopology;
  if (!isRecord(topology)) return undefined;
  if (Array.isArray(topology.node)) return "graph-model";
  if (topology.model_config != null || topology.class_name != null) return "layers-model";
  return undefined;
}

export function requireTfjsFormat(json: TfjsModelJson, context: ModelContext): TfjsModelFormat {
  const format = detectTfjsFormat(json);
  if (format === undefined) {
    throw invalid(
      `Cannot tell what kind of TF.js model is in ${context.location} (format ${JSON.stringify(json.format ?? null)}, and the topology is neither a graph nor a Keras model).`,
      context,
      "hubcache loads graph models (tfjs-converter) and layers models (tfjs-layers).",
    );
  }
  return format;
}

const DTYPE_BYTES: Readonly<Record<string, number>> = {
  float32: 4,
  int32: 4,
  bool: 1,
  complex64: 8,
  // Quantized storage types.
  uint8: 1,
  uint16: 2,
  float16: 2,
};

/**
 * The bytes a weight group's files must hold together, or undefined when it cannot be known in
 * advance (string tensors are variable-length; unknown dtypes are left to TF.js).
 */
export function expectedGroupBytes(group: WeightGroup): number | undefined {
  let total = 0;
  for (const weight of group.weights) {
    const dtype = weight.quantization?.dtype ?? weight.dtype;
    const bytes = DTYPE_BYTES[dtype];
    if (bytes === undefined) return undefined;
    total += weight.shape.reduce((a, b) => a * b, 1) * bytes;
  }
  return total;
}

/** Every weight file the manifest names, in order. */
export function weightFiles(json: TfjsModelJson): string[] {
  return (json.weightsManifest ?? []).flatMap((group) => group.paths);
}

/** The weight entries, flattened in manifest order (TF.js's `getWeightSpecs`). */
export function weightSpecs(json: TfjsModelJson): WeightEntry[] {
  return (json.weightsManifest ?? []).flatMap((group) => group.weights);
}
