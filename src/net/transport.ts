/**
 * One HTTP request, whichever stack carries it: for direct downloads, hubcache's socket reader for
 * plain-http GETs (socket-transport.ts) and node:http(s) for the rest (node-transport.ts); or a
 * fetch (undici's with a proxy, or the caller's). A transport sends ONE request and never follows
 * redirects: redirects, content codings and transfer limits are decided once, above it (request.ts,
 * download.ts), so every stack gives the same outcome for the same answer.
 */
import type { AddressGuard } from "./address-guard.js";
import type { FetchFunction } from "./http-errors.js";
import type { TransferLimits } from "./transfer-limits.js";

/** One answer, whichever HTTP stack brought it. */
export interface Reply {
  status: number;
  /** The URL that answered. */
  url: string;
  header(name: string): string | undefined;
  /**
   * The next body bytes (decoded from the content codings in DECODED_CODINGS), or null at the end.
   * Rejects when the body breaks or the request is aborted.
   */
  next(): Promise<Buffer | null>;
  /** Stop reading and release the connection. */
  cancel(): void;
}

export interface OutgoingRequest {
  method: "GET" | "HEAD";
  url: string;
  headers: Record<string, string>;
  /** Aborting it must make the request and `next()` reject. */
  signal: AbortSignal;
  /**
   * Set for a guarded request (see address-guard.ts): a transport that resolves host names itself
   * checks every address it would connect to, and fails with AddressRefused (node-transport.ts;
   * undici's direct connections get the guard's lookup from client.ts). Through a proxy the proxy
   * resolves names, so only the URL check (request.ts) applies.
   */
  guard?: AddressGuard | undefined;
}

export interface Transport {
  /** Send one request; a 3xx comes back as it is (redirects are followed by the caller). */
  send(request: OutgoingRequest): Promise<Reply>;
  /** The rate and time limits of transfers made over this transport. */
  limits: TransferLimits;
  /**
   * When set, every request over this transport is guarded: request.ts checks each hop's URL
   * before sending it and hands the guard to `send` for the addresses. Unset: nothing is checked.
   */
  guard?: AddressGuard | undefined;
}

/**
 * Content codings both stacks decode (fetch does it itself, node-transport.ts with zlib). Any
 * other coding is refused before the body is read (see request.ts), on both stacks alike.
 */
export const DECODED_CODINGS = new Set(["identity", "gzip", "x-gzip", "deflate", "br"]);

/** The codings of a Content-Encoding header, in the order they were applied (lower case). */
export function contentCodings(value: string | undefined): string[] {
  return (value ?? "")
    .split(",")
    .map((coding) => coding.trim().toLowerCase())
    .filter((coding) => coding !== "");
}

/** A transport over any fetch (hubcache's undici client for proxies, or the caller's). */
export function fetchTransport(fetch: FetchFunction, limits: TransferLimits): Transport {
  return {
    limits,
    send: async ({ method, url, headers, signal }) => {
      const response = await fetch(url, { method, headers, redirect: "manual", signal });
      const reader = response.body?.getReader();
      return {
        status: response.status,
        url: response.url || url,
        header: (name) => response.headers.get(name) ?? undefined,
        next: async () => {
          if (!reader) return null;
          const { done, value } = await reader.read();
          return done ? null : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
        },
        cancel: () => void reader?.cancel().catch(() => undefined),
      };
    },
  };
}
