/** Storage locations (`s3://bucket/prefix`, `gs://…`, `https://…`, `file://…`, paths) and keys. Pure. */
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ErrorCode, HubcacheError } from "../errors.js";

export type StorageLocation =
  | {
      scheme: "s3" | "gs";
      bucket: string;
      /** No leading or trailing "/"; "" for the bucket's root. */ prefix: string;
    }
  | { scheme: "file"; dir: string }
  | { scheme: "http"; url: string };

/** Is this a location on object storage or a web server (anything with "://" but file://)? */
export function isRemoteLocation(location: string): boolean {
  return location.includes("://") && !/^file:\/\//i.test(location);
}

export function parseStorageLocation(location: string, cwd = process.cwd()): StorageLocation {
  const object = /^(s3|gs):\/\/([^/]*)\/?(.*)$/i.exec(location);
  if (object) {
    const scheme = (object[1] ?? "").toLowerCase() as "s3" | "gs";
    const bucket = object[2] ?? "";
    if (!bucket) {
      throw new HubcacheError(ErrorCode.INVALID_CONFIG, `"${location}" names no bucket.`, {
        hint: `Write it as ${scheme}://BUCKET/optional/prefix.`,
      });
    }
    return { scheme, bucket, prefix: (object[3] ?? "").replace(/^\/+|\/+$/g, "") };
  }
  if (/^https?:\/\//i.test(location)) return { scheme: "http", url: location };
  if (/^file:\/\//i.test(location)) return { scheme: "file", dir: fileURLToPath(location) };
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(location)) {
    throw new HubcacheError(
      ErrorCode.UNSUPPORTED,
      `Storage location "${location}" has an unsupported scheme.`,
      {
        hint: "Use s3://, gs://, http(s)://, file:// or a local path.",
      },
    );
  }
  return { scheme: "file", dir: path.resolve(cwd, location) };
}

/**
 * Check a storage key: relative, "/"-separated, no empty, "." or ".." segment. Keys may come from
 * a bucket listing that someone else wrote, so this is what keeps them inside a local directory.
 */
export function checkKey(key: string): string {
  if (key === "") return key;
  const segments = key.split("/");
  if (key.startsWith("/") || key.includes("\\") || key.includes("\0") || segments.some(badSegment)) {
    throw new HubcacheError(ErrorCode.INVALID_CONFIG, `"${key}" is not a valid storage key.`, {
      hint: 'Keys are relative paths with "/" separators and no "." or ".." parts.',
    });
  }
  return key;
}

function badSegment(segment: string, index: number, all: string[]): boolean {
  // A trailing "/" (a folder marker) is allowed; other empty segments are not.
  if (segment === "") return index !== all.length - 1;
  return segment === "." || segment === "..";
}

/** The key prefix that roots a storage at `prefix` inside a bucket: "" or "prefix/". */
export function rootPrefix(prefix: string): string {
  return prefix ? `${prefix}/` : "";
}
