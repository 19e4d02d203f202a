/** The storage layer: one interface, four backends, and what is built on them. */
export type {
  Storage,
  StorageScheme,
  StoredObject,
  ByteRange,
  ObjectBody,
  WriteBody,
  WriteOptions,
} from "./types.js";
export { openStorage } from "./open.js";
export type { StorageOptions } from "./open.js";
export type { S3Options } from "./s3.js";
export type { GcsOptions } from "./gcs.js";
export { folderExists, probeCreateOnly } from "./transfer.js";
export { isRemoteLocation, parseStorageLocation } from "./location.js";
export type { StorageLocation } from "./location.js";
