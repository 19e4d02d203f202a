/**
 * The public API of hubcache. Everything here is a promise to users: test/api-surface.test.ts pins
 * the list of exports (and test/api/consumer.ts their types), so it cannot change by accident.
 * Internals are imported by path inside the package, never re-exported here.
 */
export { resolve } from "./resolve.js";
export type { ResolveOptions } from "./resolve.js";
export type { Env, TfhubFlags } from "./config.js";
export { parseHandle } from "./handle.js";
export { handleHash } from "./cache/layout.js";
export type { ParsedHandle, LoadFormat, ModelFormat, ParseHandleOptions, ObjectScheme } from "./handle.js";
export { HubcacheError, ErrorCode, isHubcacheError } from "./errors.js";
export type { HubcacheErrorOptions } from "./errors.js";
export type { HubcacheEvent, ProgressEvent } from "./events.js";
export { redactUrl } from "./redact.js";
export { VERSION } from "./version.js";

// TF.js models: load, describe, and plug hubcache into TF.js's own loaders.
export { load, modelInfo, cacheIOHandler, sourceIOHandler, hubFetch } from "./load/index.js";
export { dirSource, httpSource, storageSource } from "./load/index.js";
export type {
  LoadOptions,
  TfjsModel,
  GraphModel,
  LayersModel,
  ModelReadOptions,
  SourceHandlerOptions,
  HubFetchOptions,
  ModelInfo,
  ModelKind,
  TensorInfo,
  LocateOptions,
  ModelSource,
  ObjectReader,
  OpenModelStore,
  HttpSourceOptions,
  SourceContext,
  TfjsModelFormat,
  TfjsModelJson,
  WeightEntry,
  WeightGroup,
} from "./load/index.js";

// Reading files from s3://, gs://, http(s):// and local locations (UNCOMPRESSED mode's remote models).
export { openStorage } from "./storage/index.js";
export type {
  Storage,
  StorageScheme,
  StoredObject,
  ByteRange,
  ObjectBody,
  WriteBody,
  WriteOptions,
  StorageOptions,
  S3Options,
  GcsOptions,
} from "./storage/index.js";

// Cache management: list, remove, prune and verify entries (local or s3:// / gs:// caches).
export {
  listEntries,
  removeEntries,
  pruneCache,
  verifyEntries,
  cacheDirInfo,
  parseSize,
  parseDuration,
} from "./manage/index.js";
export type {
  CacheEntry,
  CacheListing,
  EntrySort,
  ListOptions,
  RemoveOptions,
  RemoveResult,
  RemovedEntry,
  PruneOptions,
  PruneResult,
  PrunedEntry,
  PruneReason,
  VerifyOptions,
  VerifyResult,
  VerifiedEntry,
  FileProblem,
  CacheDirInfo,
  CacheDirSource,
  ManageOptions,
} from "./manage/index.js";
