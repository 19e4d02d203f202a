/**
 * The one storage interface behind every backend: local disk, s3://, gs:// and read-only http(s)://.
 * A Storage is rooted at a location (a directory, a bucket prefix, a URL); keys are relative to it,
 * "/"-separated, never starting with "/" and never holding "." or ".." segments.
 */
import type { Readable } from "node:stream";

export type StorageScheme = "file" | "s3" | "gs" | "http";

/** One stored object (a file on disk). */
export interface StoredObject {
  /** Key relative to the storage root. */
  key: string;
  size: number;
  /** Last modification time, as the store reports it (ms since the epoch). */
  modifiedMs: number | undefined;
  /** Changes whenever the object is rewritten: ETag, GCS generation, or mtime+size on disk. */
  version: string | undefined;
}

/** Bytes `start` to `end` inclusive (`end` omitted: to the end of the object). */
export interface ByteRange {
  start: number;
  end?: number | undefined;
}

export interface ObjectBody {
  body: Readable;
  /** Bytes in this body (the range's length for a ranged read), when known. */
  length: number | undefined;
  contentType: string | undefined;
}

export interface WriteOptions {
  /**
   * Create only: succeed only if no object has this key (S3 `If-None-Match: *`, GCS
   * `ifGenerationMatch: 0`, a hard link on disk). Throws ERR_HUBCACHE_UNSUPPORTED when the store
   * says it cannot do this; callers that need it must also cope with stores that silently ignore
   * it (see `probeCreateOnly` in src/storage/transfer.ts).
   */
  ifAbsent?: boolean | undefined;
  /** Size of a streamed body, when known (lets S3 use one PUT). */
  contentLength?: number | undefined;
  contentType?: string | undefined;
}

export type WriteBody = Readable | Uint8Array | string;

export interface Storage {
  readonly scheme: StorageScheme;
  /** The root location, e.g. "s3://bucket/prefix", "/abs/dir", "https://host/path". */
  readonly location: string;
  /** True when write, publish and delete are refused (http). */
  readonly readOnly: boolean;
  /** The location of a key, in the root's scheme (a path for local disk). */
  locationOf(key: string): string;
  /** The object's size and version, or undefined when there is no object with this key. */
  stat(key: string): Promise<StoredObject | undefined>;
  /** Read an object, whole or a byte range. A missing object throws ERR_HUBCACHE_NOT_FOUND. */
  read(key: string, range?: ByteRange): Promise<ObjectBody>;
  /**
   * Every object whose key starts with `prefix` (a plain string prefix, "/" has no special
   * meaning), fetched page by page as the caller iterates. Order is the store's (key order on
   * S3, GCS and local disk; not on every S3-compatible server).
   */
  list(prefix: string): AsyncIterable<StoredObject>;
  /** Write an object from a stream or bytes. Returns false only when `ifAbsent` found one there. */
  write(key: string, body: WriteBody, options?: WriteOptions): Promise<boolean>;
  /**
   * Move one object to another key, so that `to` appears whole: a rename on disk, a server-side
   * copy then a delete of the source on object stores.
   */
  publish(from: string, to: string): Promise<void>;
  /** Delete an object; a missing one is not an error. */
  delete(key: string): Promise<void>;
}
