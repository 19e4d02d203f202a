export { resolve, resolveSettings, DEFAULT_LOCK_TIMEOUT_MS } from "./resolve.js";
export type { ResolveOptions, ResolvedSettings } from "./resolve.js";
export { parseHandle, appendFormatQuery, detectModelFormat } from "./handle.js";
export type { ParsedHandle, LoadFormat, ModelFormat, ParseHandleOptions, ObjectScheme } from "./handle.js";
export { HubcacheError, ErrorCode, isHubcacheError } from "./errors.js";
export type { HubcacheErrorOptions } from "./errors.js";
export type { HubcacheEvent, ProgressEvent } from "./events.js";
export { entryPaths, handleHash, descriptorText } from "./cache/layout.js";
export type { EntryPaths } from "./cache/layout.js";
export { chooseCacheDir, readTfhubFlags } from "./config.js";
export type { TfhubFlags, Env } from "./config.js";
export { redactUrl, redactText } from "./redact.js";
export { VERSION } from "./version.js";
export * from "./load/index.js";
export {
  openStorage,
  folderExists,
  probeCreateOnly,
  isRemoteLocation,
  parseStorageLocation,
} from "./storage/index.js";
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
  StorageLocation,
} from "./storage/index.js";
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
