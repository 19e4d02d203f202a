/** An archive stored at s3://, gs:// (or any Storage) streamed into a directory, with progress. */
import type { EventListener } from "../events.js";
import { extractArchive } from "../extract/extract.js";
import type { DownloadReport } from "../cache/local-cache.js";
import { redactUrl } from "../redact.js";
import type { Storage } from "./types.js";

const PROGRESS_INTERVAL_MS = 100;

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
  let downloaded = 0;
  let extracted = 0;
  let entries = 0;
  let lastEmit = 0;
  const progress = (done: boolean): void =>
    emit({
      type: "progress",
      handle,
      downloadedBytes: downloaded,
      totalBytes: object.length,
      extractedBytes: extracted,
      files: entries,
      done,
    });
  const result = await extractArchive(object.body, dir, {
    handle,
    contentType: object.contentType,
    maxExtractBytes: options.maxExtractBytes,
    minFreeBytes: options.minFreeBytes,
    signal: options.signal,
    onBytes: (compressed, uncompressed, count) => {
      downloaded = compressed;
      extracted = uncompressed;
      entries = count;
      const now = Date.now();
      if (now - lastEmit >= PROGRESS_INTERVAL_MS) {
        lastEmit = now;
        options.touch?.();
        progress(false);
      }
    },
  });
  progress(true);
  return { archiveBytes: result.compressedBytes };
}
