import { redactText } from "./redact.js";

/** What the library reports while it works. It never prints: callers subscribe with `onEvent`/`onProgress`. */

export interface ProgressEvent {
  type: "progress";
  handle: string;
  /** Bytes received from the network (compressed). */
  downloadedBytes: number;
  /** Content-Length of the archive, when the host sent one. */
  totalBytes: number | undefined;
  /** Bytes written to disk so far (uncompressed). */
  extractedBytes: number;
  /** Archive entries (files and folders) unpacked so far. */
  files: number;
  /** True on the last progress event of a download. */
  done: boolean;
}

export type HubcacheEvent =
  | { type: "cache-hit"; handle: string; path: string; writer: "hubcache" | "other" }
  | { type: "cache-incomplete"; handle: string; path: string; reason: string }
  | { type: "download-start"; handle: string; url: string }
  | ProgressEvent
  /** Waiting for another download of the same model; `holder` is the lock's "hostname.pid.uid". */
  | { type: "lock-wait"; handle: string; holder: string; waitedMs: number; staleAfterMs: number }
  | {
      type: "lock-takeover";
      handle: string;
      holder: string;
      reason: "holder-dead" | "no-progress";
      staleAfterMs: number;
    }
  | { type: "orphan-removed"; path: string }
  | { type: "published"; handle: string; path: string; bytes: number; files: number; ms: number }
  | { type: "publish-lost"; handle: string; path: string }
  | {
      type: "retry";
      handle: string;
      /** This retry's number, 1-based: retry `attempt` of `retries`. */
      attempt: number;
      /** How long hubcache waits before it. */
      delayMs: number;
      /** What failed and what comes next ("ECONNRESET after 400000 bytes; resuming at byte 400000"). */
      reason: string;
      /** Retries allowed in all: after retry `retries` fails, hubcache gives up. */
      retries?: number;
      /** The URL being retried (redacted). */
      url?: string;
      /** The ERR_HUBCACHE_* code the download fails with if no retry succeeds. */
      code?: string;
      /** Time since the download's first request, ms. */
      elapsedMs?: number;
    }
  | { type: "warning"; handle?: string; message: string };

export type EventListener = (event: HubcacheEvent) => void;

/** Events carry handles and URLs: never with credentials or a signed query in them. */
function redactEvent(event: HubcacheEvent): HubcacheEvent {
  const copy = { ...event } as Record<string, unknown>;
  for (const key of ["handle", "url", "reason", "message"]) {
    const value = copy[key];
    if (typeof value === "string") copy[key] = redactText(value);
  }
  return copy as unknown as HubcacheEvent;
}

/** Call a user listener without letting its exceptions break a download. */
export function emitter(
  onEvent: EventListener | undefined,
  onProgress: ((event: ProgressEvent) => void) | undefined,
): EventListener {
  return (raw) => {
    const event = redactEvent(raw);
    try {
      onEvent?.(event);
      if (event.type === "progress") onProgress?.(event);
    } catch {
      // A listener's bug must not corrupt the cache; it is the listener's to report.
    }
  };
}
