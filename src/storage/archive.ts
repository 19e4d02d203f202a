/** An archive stored at s3://, gs:// (or any Storage) streamed into a directory, with progress. */
import type { EventListener } from "../events.js";
import { extractWithProgress } from "../extract/with-progress.js";
import type { DownloadReport } from "../cache/local-cache.js";
import { redactUrl } from "../redact.js";
import type { Storage } from "./types.js";

export interface ExtractFromStorageOptions {
  handle: string;
  emit: EventListener;
  maxExtractBytes?: number | undefined;
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
    minFreeBytes: options.minFreeBytes,
    signal: options.signal,
  });
  return { archiveBytes: result.compressedBytes };
}
