/**
 * Reading one model file from a host, over the same HTTP stack as archive downloads: the caller's
 * fetch, else hubcache's undici client when a proxy is configured, else the node:http fast path;
 * with the same retries, idle timeout, Range resume and Basic auth from URL credentials.
 */
import type { Readable } from "node:stream";
import type { EventListener } from "../events.js";
import { httpStack } from "../net/client.js";
import { openDownload } from "../net/download.js";
import type { FetchFunction } from "../net/http-errors.js";
import { DEFAULT_RETRY_POLICY, RetryBudget } from "../net/retry.js";
import type { ResolvedSettings } from "../settings.js";

export interface RemoteFileOptions {
  handle: string;
  settings: ResolvedSettings;
  emit: EventListener;
  fetch?: FetchFunction | undefined;
  signal?: AbortSignal | undefined;
}

export interface RemoteFile {
  stream: Readable;
  contentLength: number | undefined;
}

/** GET one file (redirects followed, retried and resumed as needed). Non-2xx answers throw coded errors. */
export async function openRemoteFile(url: string, options: RemoteFileOptions): Promise<RemoteFile> {
  const { settings } = options;
  const stack = httpStack(settings.network, options.fetch);
  try {
    const download = await openDownload(url, {
      handle: options.handle,
      transport: stack.transport,
      idleTimeoutMs: settings.network.idleTimeoutMs,
      budget: new RetryBudget({
        ...DEFAULT_RETRY_POLICY,
        retries: settings.retries,
        baseDelayMs: settings.retryDelayMs,
      }),
      emit: options.emit,
      signal: options.signal,
    });
    download.stream.once("close", () => void stack.close().catch(() => undefined));
    return { stream: download.stream, contentLength: download.contentLength };
  } catch (error) {
    await stack.close().catch(() => undefined);
    throw error;
  }
}
