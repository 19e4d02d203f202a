/**
 * `modelInfo(handle)`: what a model is (TF.js graph or layers model, SavedModel), its inputs and
 * outputs with shapes and dtypes, and its files and size. Read from model.json alone: TensorFlow.js
 * is not needed.
 */
import { redactUrl } from "../redact.js";
import { locatedModelError } from "./diagnose.js";
import { type LocateOptions, locateModel } from "./locate.js";
import {
  type TfjsModelJson,
  detectTfjsFormat,
  expectedGroupBytes,
  parseModelJson,
  weightFiles,
  weightSpecs,
} from "./model-json.js";

export interface TensorInfo {
  name: string;
  /** TF.js dtype name (float32, int32, ...), when model.json says. */
  dtype: string | undefined;
  /** Dimensions, null where any size is accepted; undefined when model.json does not say. */
  shape: (number | null)[] | undefined;
}

export type ModelKind = "graph-model" | "layers-model" | "saved-model" | "tf1-hub-module" | "unknown";

export interface ModelInfo {
  handle: string;
  kind: ModelKind;
  /** The model's folder (local directory, or URL with credentials redacted). */
  location: string;
  /** The cache entry, when the model came through the cache. */
  cacheEntry: string | undefined;
  generatedBy: string | undefined;
  convertedBy: string | undefined;
  inputs: TensorInfo[];
  outputs: TensorInfo[];
  weights: { tensors: number; files: number; bytes: number | undefined };
  /** Every file with its size (local folders), or the files model.json names (remote; sizes unknown). */
  files: { path: string; size: number | undefined }[];
  /** Total bytes of the files, when known. */
  totalBytes: number | undefined;
  /** What to do with a model load() cannot run (SavedModels), for display. */
  note: string | undefined;
}

/** Describe the model a handle names (downloading it into the cache first in compressed mode). */
export async function modelInfo(handle: string, options: LocateOptions = {}): Promise<ModelInfo> {
  const located = await locateModel(handle, options);
  const { source } = located;
  const location = redactUrl(source.location);
  const listed = source.list ? await source.list() : undefined;
  const base = {
    handle,
    kind: "unknown" as ModelKind,
    location,
    cacheEntry: located.cacheEntry,
    generatedBy: undefined,
    convertedBy: undefined,
    inputs: [],
    outputs: [],
    weights: { tensors: 0, files: 0, bytes: undefined },
    files: listed ?? [],
    totalBytes: listed?.reduce((sum, f) => sum + f.size, 0),
  };
  if (located.folder.kind !== "tfjs") {
    const problem = locatedModelError(located);
    const kind: ModelKind =
      located.folder.kind === "saved-model"
        ? located.folder.marker === "tfhub_module.pb"
          ? "tf1-hub-module"
          : "saved-model"
        : "unknown";
    return { ...base, kind, note: problem ? `${problem.message} ${problem.hint ?? ""}`.trim() : undefined };
  }

  const json = parseModelJson(await source.read(located.modelFile, options.signal), { handle, location });
  const kind = detectTfjsFormat(json) ?? "unknown";
  const groups = json.weightsManifest ?? [];
  const groupBytes = groups.map(expectedGroupBytes);
  const io = kind === "graph-model" ? graphIO(json) : kind === "layers-model" ? layersIO(json) : undefined;
  return {
    ...base,
    kind,
    generatedBy: typeof json.generatedBy === "string" ? json.generatedBy : undefined,
    convertedBy: typeof json.convertedBy === "string" ? json.convertedBy : undefined,
    inputs: io?.inputs ?? [],
    outputs: io?.outputs ?? [],
    weights: {
      tensors: weightSpecs(json).length,
      files: weightFiles(json).length,
      bytes: groupBytes.every((b) => b !== undefined)
        ? groupBytes.reduce<number>((a, b) => a + (b ?? 0), 0)
        : undefined,
    },
    files: listed ?? [located.modelFile, ...weightFiles(json)].map((path) => ({ path, size: undefined })),
    note: undefined,
  };
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

/** TensorFlow's DataType enum names, as model.json signatures spell them, to TF.js dtype names. */
const TF_DTYPES: Readonly<Record<string, string>> = {
  DT_FLOAT: "float32",
  DT_DOUBLE: "float64",
  DT_HALF: "float16",
  DT_INT32: "int32",
  DT_INT64: "int64",
  DT_INT16: "int16",
  DT_INT8: "int8",
  DT_UINT8: "uint8",
  DT_UINT16: "uint16",
  DT_BOOL: "bool",
  DT_STRING: "string",
  DT_COMPLEX64: "complex64",
};

function tfDtype(value: unknown): string | undefined {
  if (typeof value !== "string") return undefined;
  return TF_DTYPES[value] ?? value.replace(/^DT_/, "").toLowerCase();
}

/** A TensorShapeProto in JSON: `{dim: [{size: "1"}, {size: "-1"}]}`; -1 is "any". */
function protoShape(value: unknown): (number | null)[] | undefined {
  if (!isRecord(value) || value.unknownRank === true) return undefined;
  const dims = Array.isArray(value.dim) ? value.dim : [];
  return dims.map((d: unknown) => {
    const size = Number(isRecord(d) ? (d.size ?? 0) : 0);
    return Number.isFinite(size) && size >= 0 ? size : null;
  });
}

function signatureTensors(value: unknown): TensorInfo[] {
  if (!isRecord(value)) return [];
  return Object.entries(value).map(([key, tensor]) => {
    const t = isRecord(tensor) ? tensor : {};
    return {
      name: typeof t.name === "string" ? t.name : key,
      dtype: tfDtype(t.dtype),
      shape: protoShape(t.tensorShape),
    };
  });
}

const NOT_OUTPUTS = new Set(["Const", "NoOp", "Placeholder", "PlaceholderWithDefault"]);

/** Graph models: the signature when there is one, else Placeholders and the nodes nothing reads. */
function graphIO(json: TfjsModelJson): { inputs: TensorInfo[]; outputs: TensorInfo[] } {
  const signature = isRecord(json.userDefinedMetadata?.signature)
    ? json.userDefinedMetadata.signature
    : json.signature;
  if (isRecord(signature) && (isRecord(signature.inputs) || isRecord(signature.outputs))) {
    return { inputs: signatureTensors(signature.inputs), outputs: signatureTensors(signature.outputs) };
  }
  const topology = isRecord(json.modelTopology) ? json.modelTopology : {};
  const nodes = (Array.isArray(topology.node) ? topology.node : []).filter(isRecord);
  const consumed = new Set<string>();
  for (const node of nodes) {
    for (const input of Array.isArray(node.input) ? node.input : []) {
      if (typeof input === "string") consumed.add(input.replace(/^\^/, "").replace(/:\d+$/, ""));
    }
  }
  const attr = (node: Record<string, unknown>, name: string): Record<string, unknown> => {
    const attrs = isRecord(node.attr) ? node.attr : {};
    const value = attrs[name];
    return isRecord(value) ? value : {};
  };
  const inputs = nodes
    .filter((n) => n.op === "Placeholder")
    .map((n) => ({
      name: String(n.name),
      dtype: tfDtype(attr(n, "dtype").type),
      shape: protoShape(attr(n, "shape").shape),
    }));
  const outputs = nodes
    .filter((n) => typeof n.name === "string" && !consumed.has(n.name) && !NOT_OUTPUTS.has(String(n.op)))
    .map((n) => ({ name: String(n.name), dtype: tfDtype(attr(n, "T").type), shape: undefined }));
  return { inputs, outputs };
}

/** Keras layer dtype: a string, or (Keras 3) a DTypePolicy object. */
function kerasDtype(config: Record<string, unknown>): string | undefined {
  const dtype = config.dtype;
  if (typeof dtype === "string") return dtype;
  if (isRecord(dtype) && isRecord(dtype.config) && typeof dtype.config.name === "string") {
    return dtype.config.name;
  }
  return undefined;
}

function kerasShape(config: Record<string, unknown>): (number | null)[] | undefined {
  const shape = config.batch_input_shape ?? config.batch_shape;
  return Array.isArray(shape) ? shape.map((d) => (typeof d === "number" ? d : null)) : undefined;
}

/** Layers models: the input layers' shapes and dtypes, and the output layers' names. */
function layersIO(json: TfjsModelJson): { inputs: TensorInfo[]; outputs: TensorInfo[] } {
  const topology = isRecord(json.modelTopology) ? json.modelTopology : {};
  const model = isRecord(topology.model_config) ? topology.model_config : topology;
  const config = isRecord(model.config) ? model.config : {};
  const layerList = Array.isArray(model.config)
    ? model.config
    : Array.isArray(config.layers)
      ? config.layers
      : [];
  const layers = layerList.filter(isRecord).map((layer) => {
    const layerConfig = isRecord(layer.config) ? layer.config : {};
    const name =
      typeof layer.name === "string"
        ? layer.name
        : typeof layerConfig.name === "string"
          ? layerConfig.name
          : "";
    return { name, config: layerConfig };
  });
  const byName = new Map(layers.map((l) => [l.name, l]));
  const refs = (value: unknown): string[] => {
    if (!Array.isArray(value)) return [];
    if (typeof value[0] === "string") return [value[0]];
    return value.flatMap((v) => (Array.isArray(v) && typeof v[0] === "string" ? [v[0]] : []));
  };
  const describe = (name: string, withShape: boolean): TensorInfo => {
    const layer = byName.get(name);
    return {
      name,
      dtype: layer ? kerasDtype(layer.config) : undefined,
      shape: layer && withShape ? kerasShape(layer.config) : undefined,
    };
  };
  const inputNames = refs(config.input_layers);
  const outputNames = refs(config.output_layers);
  if (inputNames.length === 0 && layers.length > 0) {
    // Sequential: the first layer carries the input shape, the last one is the output.
    const first = layers[0];
    const last = layers[layers.length - 1];
    return {
      inputs: first ? [describe(first.name, true)] : [],
      outputs: last ? [describe(last.name, false)] : [],
    };
  }
  return {
    inputs: inputNames.map((n) => describe(n, true)),
    outputs: outputNames.map((n) => describe(n, false)),
  };
}
