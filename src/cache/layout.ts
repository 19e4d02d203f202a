/**
 * Cache layout, byte-compatible with Python tensorflow_hub:
 *   <cacheDir>/<sha1(handle)>/                 the model, exactly as in the archive
 *   <cacheDir>/<sha1(handle)>.descriptor.txt   TF Hub's descriptor
 *   <cacheDir>/<sha1(handle)>.lock             download lock, "hostname.pid.uid32hex"
 *   <cacheDir>/<sha1(handle)>.<uid32hex>.tmp/  a download in progress (uid = the lock holder's)
 *   <cacheDir>/<sha1(handle)>.*.tmp<uid32hex>  transient temp files (atomic writes)
 * hubcache adds one file of its own, which Python ignores:
 *   <cacheDir>/<sha1(handle)>.hubcache.json    its record of the entry (files and sizes), see record.ts
 */
import { createHash } from "node:crypto";
import os from "node:os";
import path from "node:path";
import { redactUrl } from "../redact.js";

export function handleHash(handle: string): string {
  return createHash("sha1").update(handle, "utf8").digest("hex");
}

export interface EntryPaths {
  cacheDir: string;
  hash: string;
  /** The model directory. */
  dir: string;
  descriptor: string;
  lock: string;
  /** hubcache's record, `<hash>.hubcache.json`. */
  record: string;
  /** The download directory for one attempt. */
  tmpDir(uid: string): string;
}

export function entryPaths(cacheDir: string, handle: string): EntryPaths {
  return entryPathsForHash(cacheDir, handleHash(handle));
}

/** The paths of the entry whose handle hashes to `hash`. */
export function entryPathsForHash(cacheDir: string, hash: string): EntryPaths {
  const dir = path.join(cacheDir, hash);
  return {
    cacheDir,
    hash,
    dir,
    descriptor: `${dir}.descriptor.txt`,
    lock: `${dir}.lock`,
    record: `${dir}.hubcache.json`,
    tmpDir: (uid) => `${dir}.${uid}.tmp`,
  };
}

/** Python's `str(datetime.datetime.today())`: local time, microseconds omitted when zero. */
export function pythonDateTime(date: Date, micros = 0): string {
  const pad = (n: number, width = 2): string => String(n).padStart(width, "0");
  const base =
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
  const fraction = date.getMilliseconds() * 1000 + (micros % 1000);
  return fraction === 0 ? base : `${base}.${pad(fraction, 6)}`;
}

/**
 * TF Hub's descriptor text, byte for byte (no trailing newline), with the handle redacted: a
 * descriptor never holds a credential or a signed URL's query.
 */
export function descriptorText(handle: string, date = new Date(), pid = process.pid): string {
  const micros = Number(process.hrtime.bigint() % 1000n);
  return `Module: ${redactUrl(handle)}\nDownload Time: ${pythonDateTime(date, micros)}\nDownloader Hostname: ${os.hostname()} (PID:${pid})`;
}

/** Lock file content: "hostname.pid.uid". */
export function lockContent(uid: string, pid = process.pid): string {
  return `${os.hostname()}.${pid}.${uid}`;
}

export interface LockOwner {
  host: string;
  pid: number | undefined;
  uid: string;
}

/** Parse "hostname.pid.uid"; hostnames may contain dots (TF Hub takes the last field as the uid). */
export function parseLockContent(content: string): LockOwner {
  const parts = content.trim().split(".");
  const uid = parts.pop() ?? "";
  const pidText = parts.pop();
  const pid = pidText !== undefined && /^\d+$/.test(pidText) ? Number(pidText) : undefined;
  return { host: parts.join("."), pid, uid };
}
