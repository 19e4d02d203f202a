/**
 * `load(handle)`: TF Hub's `hub.load` for TensorFlow.js. The handle is resolved through the cache
 * (downloaded once), or read straight from the host in UNCOMPRESSED mode, and the model comes back
 * as a TF.js GraphModel or LayersModel, chosen from model.json.
 */
import type { GraphModel } from "@tensorflow/tfjs-converter";
import type { LayersModel } from "@tensorflow/tfjs-layers";
import { emitter } from "../events.js";
import { locatedModelError } from "./diagnose.js";
import { type ModelReadOptions, sourceIOHandler } from "./io-handler.js";
import { type LocateOptions, type LocatedModel, locateModel } from "./locate.js";
import { type TfjsModelFormat, parseModelJson, requireTfjsFormat } from "./model-json.js";
import { importTfjs } from "./peers.js";
import { redactUrl } from "../redact.js";

export type { GraphModel, LayersModel };

/** What `load` returns: a graph model (tfjs-converter) or a layers model (tfjs-layers). */
export type TfjsModel = GraphModel | LayersModel;

export interface LoadOptions extends LocateOptions {
  /**
   * Layers models: fail when the weights do not match the model exactly (TF.js's `strict`,
   * default true). `false` is the counterpart of Python's `allow_partial_checkpoint`.
   */
  strict?: boolean;
  /**
   * Graph models: stream the weights into the backend file by file instead of holding every file
   * in memory first (TF.js's `streamWeights`; for big models). Ignored, with a warning event, for
   * layers models, which TF.js 4.22 cannot stream.
   */
  streamWeights?: boolean;
  /** Fraction (0 to 1) of weight files read, like TF.js's `onProgress`. Download progress is `onProgress`. */
  onLoadProgress?: (fraction: number) => void;
}

/**
 * Load a TF.js model by handle. The first call downloads the model's archive into the TF Hub cache
 * (`?tfjs-format=compressed` for TF.js handles); later calls read it from disk with no request.
 * In UNCOMPRESSED mode TF.js handles are read file by file from the host and nothing is written.
 *
 * The TF.js packages are optional peers: `@tensorflow/tfjs-core`, plus `@tensorflow/tfjs-converter`
 * for graph models or `@tensorflow/tfjs-layers` for layers models, and a backend you import
 * yourself (`@tensorflow/tfjs-backend-cpu` or `-wasm`).
 */
export async function load(handle: string, options: LoadOptions = {}): Promise<TfjsModel> {
  const located = await locateModel(handle, options);
  return loadLocated(located, options);
}

/** Load a model already located (shared by `load` and the CLI). */
export async function loadLocated(located: LocatedModel, options: LoadOptions = {}): Promise<TfjsModel> {
  const { source, handle } = located;
  const problem = locatedModelError(located);
  if (problem) throw problem;

  const context = { handle, location: redactUrl(source.location) };
  const modelJson = parseModelJson(await source.read(located.modelFile, options.signal), context);
  const format: TfjsModelFormat = requireTfjsFormat(modelJson, context);
  const tfjs = await importTfjs(format);

  let streamWeights = options.streamWeights ?? false;
  if (streamWeights && format === "layers-model") {
    emitter(
      options.onEvent,
      undefined,
    )({
      type: "warning",
      handle,
      message: "streamWeights applies to graph models only; this layers model is loaded in one piece.",
    });
    streamWeights = false;
  }
  const handler = sourceIOHandler(source, {
    modelJson,
    handle,
    streamWeights,
    ...(located.cacheEntry === undefined ? {} : { cacheEntry: located.cacheEntry }),
    ...(options.onLoadProgress === undefined ? {} : { onProgress: options.onLoadProgress }),
    ...(options.signal === undefined ? {} : { signal: options.signal }),
  } satisfies ModelReadOptions & Record<string, unknown>);

  if (tfjs.format === "graph-model") return tfjs.converter.loadGraphModel(handler);
  return tfjs.layers.loadLayersModel(handler, { strict: options.strict ?? true });
}
