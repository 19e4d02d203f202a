/**
 * Models in the browser's Cache Storage (see docs/browser.md for why not OPFS): one cache per model,
 * named `hubcache:v1:<canonical handle>`, holding each file under a fixed key and, written last, a
 * completion record listing every file with its size and sha-256. A cache without that record, or
 * whose files disagree with it, is no model: it is removed (under the model's lock) and fetched again.
 */
import { ErrorCode, HubcacheError } from "../errors.js";
import { digestBase64 } from "./net.js";

export const CACHE_PREFIX = "hubcache:v1:";
const KEY_BASE = "https://hubcache.invalid/";
const RECORD_KEY = `${KEY_BASE}.hubcache-complete.json`;
/** lastUsed is rewritten at most this often (a record write per load would be a write per page view). */
export const LAST_USED_RESOLUTION_MS = 60_000;

export interface StoredFile {
  path: string;
  bytes: number;
  /** base64 sha-256 of the file's bytes. */
  sha256: string;
  etag?: string | undefined;
}

export interface StoreRecord {
  version: 1;
  handle: string;
  /** model.json first, then the weight files in manifest order. */
  files: StoredFile[];
  bytes: number;
  storedAt: number;
  lastUsed: number;
}

export interface FileBytes extends StoredFile {
  data: Uint8Array;
}

export type StoredRead =
  | { ok: true; record: StoreRecord; files: Map<string, Uint8Array> }
  | { ok: false; present: boolean; reason?: string };

export const cacheName = (handle: string): string => `${CACHE_PREFIX}${handle}`;
const fileKey = (path: string): string =>
  `${KEY_BASE}files/${path.split("/").map(encodeURIComponent).join("/")}`;

export function storageAvailable(): boolean {
  return typeof caches !== "undefined";
}

function parseRecord(text: string, handle: string): StoreRecord | undefined {
  try {
    const record = JSON.parse(text) as StoreRecord;
    const filesOk =
      Array.isArray(record.files) &&
      record.files.every(
        (f) => typeof f.path === "string" && Number.isInteger(f.bytes) && typeof f.sha256 === "string",
      );
    return record.version === 1 && record.handle === handle && filesOk ? record : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Read a stored model whole and check it: every file present, of the recorded size and (with
 * `verify` "sha-256") of the recorded digest. `ok: false, present: true` is a copy that is unusable.
 */
export async function readStored(handle: string, verify: "sha-256" | "size"): Promise<StoredRead> {
  const name = cacheName(handle);
  if (!storageAvailable() || !(await caches.has(name))) return { ok: false, present: false };
  const cache = await caches.open(name);
  const recordResponse = await cache.match(RECORD_KEY);
  if (recordResponse === undefined) {
    return { ok: false, present: true, reason: "partly stored (no completion record)" };
  }
  const record = parseRecord(await recordResponse.text(), handle);
  if (record === undefined) {
    return { ok: false, present: true, reason: "the completion record is unreadable" };
  }
  const files = new Map<string, Uint8Array>();
  for (const file of record.files) {
    const response = await cache.match(fileKey(file.path));
    if (response === undefined) return { ok: false, present: true, reason: `${file.path} is missing` };
    const data = new Uint8Array(await response.arrayBuffer());
    if (data.byteLength !== file.bytes) {
      return {
        ok: false,
        present: true,
        reason: `${file.path} holds ${data.byteLength} bytes, not ${file.bytes}`,
      };
    }
    if (verify === "sha-256" && (await digestBase64("sha-256", data)) !== file.sha256) {
      return {
        ok: false,
        present: true,
        reason: `${file.path} is damaged (its sha-256 differs from the record's)`,
      };
    }
    files.set(file.path, data);
  }
  return { ok: true, record, files };
}

/** Remove a model's stored copy (whole or partial). True if there was one. */
export async function deleteStored(handle: string): Promise<boolean> {
  if (!storageAvailable()) return false;
  return caches.delete(cacheName(handle));
}

/** Is this the error a browser throws when a write exceeds the origin's quota? */
export function isQuotaError(error: unknown): boolean {
  return (
    typeof error === "object" &&
    error !== null &&
    ((error as { name?: unknown }).name === "QuotaExceededError" || (error as { code?: unknown }).code === 22)
  );
}

export interface Room {
  enough: boolean;
  quota: number | undefined;
  usage: number | undefined;
}

/** Does `navigator.storage.estimate()` leave room for `bytes` (with a margin for the browser's overhead)? */
export async function roomFor(bytes: number): Promise<Room> {
  const storage = typeof navigator === "undefined" ? undefined : navigator.storage;
  if (storage?.estimate === undefined) return { enough: true, quota: undefined, usage: undefined };
  const { quota, usage } = await storage.estimate();
  if (quota === undefined) return { enough: true, quota, usage };
  const needed = bytes + Math.max(64 * 1024, bytes * 0.02);
  return { enough: quota - (usage ?? 0) >= needed, quota, usage };
}

/**
 * Store a model: any old copy removed, every file put, the completion record put last. On any
 * failure the model's cache is deleted again, so nothing half-stored remains; the error is thrown.
 */
export async function writeStored(handle: string, files: FileBytes[]): Promise<StoreRecord> {
  const name = cacheName(handle);
  await caches.delete(name);
  const now = Date.now();
  const record: StoreRecord = {
    version: 1,
    handle,
    files: files.map(({ path, bytes, sha256, etag }) => ({ path, bytes, sha256, ...(etag ? { etag } : {}) })),
    bytes: files.reduce((sum, f) => sum + f.bytes, 0),
    storedAt: now,
    lastUsed: now,
  };
  try {
    const cache = await caches.open(name);
    for (const file of files) {
      const headers = { "content-type": "application/octet-stream", "content-length": String(file.bytes) };
      await cache.put(fileKey(file.path), new Response(file.data as BodyInit, { headers }));
    }
    await putRecord(cache, record);
    return record;
  } catch (error) {
    await caches.delete(name).catch(() => undefined);
    throw error;
  }
}

function putRecord(cache: Cache, record: StoreRecord): Promise<void> {
  return cache.put(
    RECORD_KEY,
    new Response(JSON.stringify(record), { headers: { "content-type": "application/json" } }),
  );
}

/** Rewrite the record's lastUsed when it is older than LAST_USED_RESOLUTION_MS (best effort). */
export async function touchStored(record: StoreRecord): Promise<void> {
  const now = Date.now();
  if (now - record.lastUsed < LAST_USED_RESOLUTION_MS) return;
  const name = cacheName(record.handle);
  if (!(await caches.has(name))) return; // removed meanwhile: do not bring back a record alone
  await putRecord(await caches.open(name), { ...record, lastUsed: now });
}

/** Every complete stored model's record. */
export async function storedRecords(): Promise<StoreRecord[]> {
  if (!storageAvailable()) return [];
  const records: StoreRecord[] = [];
  for (const name of await caches.keys()) {
    if (!name.startsWith(CACHE_PREFIX)) continue;
    const handle = name.slice(CACHE_PREFIX.length);
    const response = await (await caches.open(name)).match(RECORD_KEY);
    const record = response === undefined ? undefined : parseRecord(await response.text(), handle);
    if (record !== undefined) records.push(record);
  }
  return records;
}

/** Every stored model's handle, complete or not. */
export async function storedHandles(): Promise<string[]> {
  if (!storageAvailable()) return [];
  return (await caches.keys())
    .filter((n) => n.startsWith(CACHE_PREFIX))
    .map((n) => n.slice(CACHE_PREFIX.length));
}

/** A write failure as a coded error: a quota refusal is ERR_HUBCACHE_DISK_FULL. */
export function storeError(error: unknown, handle: string): HubcacheError {
  if (error instanceof HubcacheError) return error;
  if (isQuotaError(error)) {
    return new HubcacheError(
      ErrorCode.DISK_FULL,
      `The browser refused to store ${handle}: its storage quota is used up.`,
      {
        handle,
        hint: "Free some of this site's storage (removeModel, clearModels), or ask for more with persist: true.",
        cause: error,
      },
    );
  }
  return new HubcacheError(ErrorCode.IO, `Storing ${handle} in the browser failed: ${String(error)}.`, {
    handle,
    cause: error,
  });
}
