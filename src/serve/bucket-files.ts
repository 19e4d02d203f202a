/**
 * A model in a cache entry on object storage (`--cache-dir s3://…` or `gs://…`), as ModelFiles:
 * the objects below `<hash>/` (object-store.ts has the layout). A hubcache entry's files and sizes
 * come from its record (read once per request: no listing, no stat per file); an entry Python
 * wrote (no record) is listed. Bytes are streamed from the store, ranged reads for ranges. Keys are
 * built only from checked relative paths below the entry's prefix, so nothing outside it is read.
 */
import type { Readable } from "node:stream";
import { ObjectEntryStore, objectEntryKeys } from "../cache/object-store.js";
import type { Storage, StoredObject } from "../storage/types.js";
import {
  type ModelFile,
  type ModelFiles,
  type ModelListing,
  byPath,
  isPlainRelative,
  recordedDigests,
  wrappingFolder,
} from "./model-files.js";

/** The model of the entry `hash` in the cache rooted at `storage`. */
export async function bucketModelFiles(storage: Storage, hash: string): Promise<ModelFiles> {
  const keys = objectEntryKeys(hash);
  const store = new ObjectEntryStore(storage, { lockTimeoutMs: 0 });
  const record = await store.readEntryRecord(hash);
  const createdMs = record ? Date.parse(record.createdAt) : Number.NaN;
  const digests = Number.isFinite(createdMs) ? recordedDigests(record) : new Map<string, never>();

  const fromObject = (relative: string, object: StoredObject): ModelFile => {
    const recorded = digests.get(relative);
    const vouched = recorded !== undefined && recorded.size === object.size;
    return {
      path: relative,
      size: object.size,
      modifiedMs: vouched ? createdMs : (object.modifiedMs ?? 0),
      recordedCrc32: vouched ? recorded.crc32 : undefined,
      version: object.version ?? Math.floor(object.modifiedMs ?? 0).toString(16),
    };
  };
  const fromRecord = (relative: string, recorded: { size: number; crc32: string }): ModelFile => ({
    path: relative,
    size: recorded.size,
    modifiedMs: createdMs,
    recordedCrc32: recorded.crc32,
    version: "",
  });

  const list = async (): Promise<ModelListing> => {
    // Every file of a hubcache entry has its record's digest (older records: none, then listed).
    const recordedFiles = record?.files ?? [];
    if (recordedFiles.length > 0 && recordedFiles.every((file) => digests.has(file.path))) {
      // Only plain paths become keys: a record naming `a//b` or `../x` lists nothing for them.
      const files = recordedFiles.flatMap((file) => {
        const recorded = digests.get(file.path);
        return recorded && isPlainRelative(file.path) ? [fromRecord(file.path, recorded)] : [];
      });
      return { files: files.sort(byPath), dirs: [] };
    }
    const files: ModelFile[] = [];
    for await (const object of storage.list(keys.dir)) {
      const relative = object.key.slice(keys.dir.length);
      if (isPlainRelative(relative)) files.push(fromObject(relative, object));
    }
    return { files: files.sort(byPath), dirs: [] };
  };

  return {
    hash,
    record,
    modelRoot: async () => wrappingFolder((await list()).files.map((file) => file.path)),
    list,
    stat: async (relative) => {
      if (!isPlainRelative(relative)) return undefined;
      const recorded = digests.get(relative);
      if (recorded !== undefined) return fromRecord(relative, recorded);
      const object = await storage.stat(keys.dir + relative);
      return object === undefined ? undefined : fromObject(relative, object);
    },
    open: async (file: ModelFile, range?: { start: number; end: number }): Promise<Readable> => {
      if (!isPlainRelative(file.path)) throw new Error(`not a path inside the entry: ${file.path}`);
      return (await storage.read(keys.dir + file.path, range)).body;
    },
  };
}
