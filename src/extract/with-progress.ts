/** extractArchive plus `progress` events: throttled while bytes flow, then one last with the totals. */
import type { Readable } from "node:stream";
import type { EventListener } from "../events.js";
import { type ExtractOptions, type ExtractResult, extractArchive } from "./extract.js";

/** At most this often a `progress` event (and a lock heartbeat) while a download runs. */
export const PROGRESS_INTERVAL_MS = 100;

export interface ExtractWithProgressOptions extends Omit<ExtractOptions, "onBytes"> {
  emit: EventListener;
  /** The archive's size, when the source said (Content-Length, object size). */
  totalBytes: number | undefined;
  /** Marks progress (refreshes the download lock). */
  touch?: (() => void) | undefined;
}

export async function extractWithProgress(
  body: Readable,
  dir: string,
  options: ExtractWithProgressOptions,
): Promise<ExtractResult> {
  const { emit, handle, totalBytes, touch, ...extractOptions } = options;
  let downloaded = 0;
  let extracted = 0;
  let files = 0;
  let lastEmit = 0;
  const progress = (done: boolean): void =>
    emit({
      type: "progress",
      handle,
      downloadedBytes: downloaded,
      totalBytes,
      extractedBytes: extracted,
      files,
      done,
    });
  const result = await extractArchive(body, dir, {
    ...extractOptions,
    handle,
    onBytes: (compressed, uncompressed, entries) => {
      downloaded = compressed;
      extracted = uncompressed;
      files = entries;
      const now = Date.now();
      if (now - lastEmit >= PROGRESS_INTERVAL_MS) {
        lastEmit = now;
        touch?.();
        progress(false);
      }
    },
  });
  // The last byte callback can come before tar has read the last entries: report the totals.
  downloaded = result.compressedBytes;
  extracted = result.tarBytes;
  files = result.entries;
  progress(true);
  return result;
}
