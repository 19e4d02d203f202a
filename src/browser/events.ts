/**
 * What the browser library reports while it works. It never prints: the app listens, with the
 * `onEvent` option or on the `events` EventTarget (a `CustomEvent` named "hubcache" whose `detail`
 * is the event).
 */
import { redactText } from "../redact.js";

export type BrowserEvent =
  /** The model was read from browser storage: no request was made. */
  | { type: "cache-hit"; handle: string; bytes: number; ms: number }
  /** A stored copy was unusable (partly stored, damaged, or of another model.json); it was removed. */
  | { type: "cache-invalid"; handle: string; reason: string }
  /** Another tab or worker holds the download of this model; this one waits, then reads its copy. */
  | { type: "lock-wait"; handle: string }
  | { type: "download-start"; handle: string; url: string }
  | {
      type: "progress";
      handle: string;
      /** Bytes received so far, all files together. */
      loadedBytes: number;
      /** The bytes expected (model.json's manifest, else Content-Length), once known. */
      totalBytes: number | undefined;
      /** Files complete so far, model.json included. */
      files: number;
      done: boolean;
    }
  | { type: "stored"; handle: string; bytes: number; ms: number }
  /**
   * The model was loaded but could not be kept: `reason` "quota" (estimate() showed too little
   * room, or the browser refused a write with QuotaExceededError: `code` ERR_HUBCACHE_DISK_FULL),
   * "unavailable" (no Cache Storage here) or "error". Nothing of it was left in storage.
   */
  | {
      type: "store-failed";
      handle: string;
      reason: "quota" | "unavailable" | "error";
      code: string;
      message: string;
      bytes: number;
      quota?: number | undefined;
      usage?: number | undefined;
    }
  /** `persist: true` asked the browser to keep this origin's storage; `granted` is its answer. */
  | { type: "persist"; granted: boolean };

export type BrowserEventListener = (event: BrowserEvent) => void;

/** Every event also goes here, as `CustomEvent("hubcache", { detail: event })`. */
export const events: EventTarget = new EventTarget();

/** An emitter: redacts URLs in events, never lets a listener's exception break a load. */
export function emitter(onEvent: BrowserEventListener | undefined): BrowserEventListener {
  return (raw) => {
    const event = { ...raw } as Record<string, unknown>;
    for (const key of ["handle", "url", "reason", "message"]) {
      const value = event[key];
      if (typeof value === "string") event[key] = redactText(value);
    }
    const safe = event as unknown as BrowserEvent;
    try {
      onEvent?.(safe);
    } catch {
      // The listener's bug is the listener's to report.
    }
    try {
      events.dispatchEvent(new CustomEvent("hubcache", { detail: safe }));
    } catch {
      // Same for listeners on the EventTarget.
    }
  };
}
