/** Loading TF.js models from the cache: `load`, the IOHandler, the `fetchFunc` hook and `modelInfo`. */
export { load } from "./load.js";
export type { LoadOptions, TfjsModel, GraphModel, LayersModel } from "./load.js";
export { cacheIOHandler, sourceIOHandler } from "./io-handler.js";
export type { ModelReadOptions, SourceHandlerOptions } from "./io-handler.js";
export { hubFetch } from "./hub-fetch.js";
export type { HubFetchOptions } from "./hub-fetch.js";
export { modelInfo } from "./info.js";
export type { ModelInfo, ModelKind, TensorInfo } from "./info.js";
export type { LocateOptions } from "./locate.js";
export { dirSource, httpSource, storageSource } from "./source.js";
export type {
  ModelSource,
  ObjectReader,
  OpenModelStore,
  HttpSourceOptions,
  SourceContext,
} from "./source.js";
export { detectTfjsFormat } from "./model-json.js";
export type { TfjsModelFormat, TfjsModelJson, WeightEntry, WeightGroup } from "./model-json.js";
