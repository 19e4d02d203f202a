/** An archive stored at s3://, gs:// (or any Storage), streamed into a directory with progress. */
import type { DownloadReport, Producer } from "../cache/ensure-entry.js";
import type { EventListener } from "../events.js";
import type { ExtractResult } from "../extract/extract.js";
import { extractWithProgress } from "../extract/with-progress.js";
import type { ParsedHandle } from "../handle.js";
import { redactUrl } from "../redact.js";
import { type StorageOptions, openStorage } from "../storage/open.js";
import type { Storage } from "../storage/types.js";

export interface ExtractFromStorageOptions {
  handle: string;
  emit: EventListener;
  maxExtractBytes?: number | undefined;
  maxFiles?: number | undefined;
  minFreeBytes?: number | undefined;
  signal?: AbortSignal | undefined;
  /** Marks progress (refreshes a lock). */
  touch?: (() => void) | undefined;
}

export async function extractFromStorage(
  storage: Storage,
  key: string,
  dir: string,
  options: ExtractFromStorageOptions,
): Promise<DownloadReport> {
  const { handle, emit } = options;
  emit({ type: "download-start", handle, url: redactUrl(storage.locationOf(key)) });
  const object = await storage.read(key);
  const result = await extractWithProgress(object.body, dir, {
    handle,
    emit,
    touch: options.touch,
    totalBytes: object.length,
    contentType: object.contentType,
    maxExtractBytes: options.maxExtractBytes,
    maxFiles: options.maxFiles,
    minFreeBytes: options.minFreeBytes,
    signal: options.signal,
    digests: true,
  });
  return digestReport(result);
}

/** What an extraction tells the cache: the archive's size and the digests for its record. */
export function digestReport(result: ExtractResult): DownloadReport {
  return {
    archiveBytes: result.compressedBytes,
    crc32ByPath: result.crc32ByPath,
    archiveSha256: result.archiveSha256,
  };
}

/** The producer of a gs:// or s3:// archive handle: the bucket's object, extracted. */
export function objectArchiveProducer(
  parsed: Extract<ParsedHandle, { kind: "object-archive" }>,
  options: Omit<ExtractFromStorageOptions, "handle" | "touch"> & { storage: StorageOptions },
): Producer {
  return async (dir, touch) => {
    const storage = await openStorage(`${parsed.scheme}://${parsed.bucket}`, options.storage);
    return extractFromStorage(storage, parsed.key, dir, { ...options, handle: parsed.handle, touch });
  };
}
