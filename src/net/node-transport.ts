/**
 * One request over node:http / node:https. It streams a large body with about half the
 * main-thread CPU of the global fetch (whose web streams cost ~0.5 s per 100 MB here), and that
 * thread also drives tar: measured 1.3 s against 1.75 s for a 256 MiB model (see `npm run bench`).
 * Like fetch, it decodes gzip, deflate and br bodies, so both stacks hand over the same bytes.
 * A guarded request resolves names through `guardedLookup`: every address checked, on the
 * connection itself.
 */
import dns from "node:dns";
import http from "node:http";
import https from "node:https";
import type { Readable } from "node:stream";
import type net from "node:net";
import type { LookupFunction } from "node:net";
import { isIP } from "node:net";
import zlib from "node:zlib";
import { type AddressGuard, AddressRefused } from "./address-guard.js";
import type { TransferLimits } from "./transfer-limits.js";
import { type OutgoingRequest, type Reply, type Transport, contentCodings } from "./transport.js";

export interface NodeTransportOptions {
  /** false only when TFHUB_DISABLE_CERT_VALIDATION=true. */
  insecureTls: boolean;
  /** Give up when the TCP connection is not up after this many ms. */
  connectTimeoutMs: number;
  limits: TransferLimits;
}

/**
 * Fails a connection with UND_ERR_CONNECT_TIMEOUT (retried as undici's is) when `socket` is not up
 * after `limit` ms; a socket already connected (a reused one) is left alone. Both direct transports.
 */
export function failSlowConnect(socket: net.Socket, limit: number, fail: (error: Error) => void): void {
  if (!socket.connecting) return;
  const timer = setTimeout(() => {
    fail(Object.assign(new Error(`connect timeout (${limit} ms)`), { code: "UND_ERR_CONNECT_TIMEOUT" }));
  }, limit);
  socket.once("connect", () => clearTimeout(timer));
  socket.once("close", () => clearTimeout(timer));
}

/** The decoder of one content coding of DECODED_CODINGS (gzip and x-gzip alike). Both direct transports. */
export function decoderFor(coding: string): zlib.Gunzip | zlib.Inflate | zlib.BrotliDecompress {
  if (coding === "br") return zlib.createBrotliDecompress();
  if (coding === "deflate") return zlib.createInflate();
  return zlib.createGunzip();
}

type LookupCallback = Parameters<LookupFunction>[2];

/**
 * The lookup of a guarded connection: DNS (or the guard's pinned addresses) asked for every
 * address, each checked; one refused address refuses the connection (AddressRefused).
 */
export function guardedLookup(guard: AddressGuard): LookupFunction {
  return (hostname, options, callback: LookupCallback) => {
    const answer = (error: NodeJS.ErrnoException | null, found: dns.LookupAddress[]): void => {
      if (error) return callback(error, "");
      if (found.length === 0) {
        const none = Object.assign(new Error(`no address for ${hostname}`), { code: "ENOTFOUND", hostname });
        return callback(none, "");
      }
      for (const { address } of found) {
        const verdict = guard.allowAddress(address, hostname);
        if (!verdict.allowed) return callback(new AddressRefused(hostname, verdict), "");
      }
      const [first] = found as [dns.LookupAddress];
      if (options.all) callback(null, found);
      else callback(null, first.address, first.family);
    };
    const pinned = guard.pinned(hostname);
    if (pinned === undefined) {
      dns.lookup(hostname, { ...options, all: true }, answer);
      return;
    }
    const family = options.family === "IPv4" ? 4 : options.family === "IPv6" ? 6 : options.family;
    const addresses = pinned
      .map((address) => ({ address, family: isIP(address) }))
      .filter((entry) => !family || entry.family === family);
    process.nextTick(answer, null, addresses);
  };
}

interface Sent {
  response: http.IncomingMessage;
  /** The request's error after the headers (a malformed body is reported there, not on the response). */
  laterError(): Error | undefined;
}

function sendOnce(request: OutgoingRequest, options: NodeTransportOptions): Promise<Sent> {
  return new Promise((resolve, reject) => {
    const url = new URL(request.url);
    const client = url.protocol === "https:" ? https : http;
    const outgoing = client.request(url, {
      method: request.method,
      headers: request.headers,
      signal: request.signal,
      ...(request.guard ? { lookup: guardedLookup(request.guard) } : {}),
      ...(url.protocol === "https:" ? { rejectUnauthorized: !options.insecureTls } : {}),
    });
    outgoing.once("socket", (socket) =>
      failSlowConnect(socket, options.connectTimeoutMs, (error) => outgoing.destroy(error)),
    );
    let later: Error | undefined;
    outgoing.once("response", (response) => {
      outgoing.on("error", (error) => (later ??= error));
      resolve({ response, laterError: () => later });
    });
    outgoing.once("error", reject);
    outgoing.end();
  });
}

/** The body with its content codings undone, last applied first (as fetch does). */
function decoded(response: http.IncomingMessage, method: string): Readable {
  const codings = contentCodings(response.headers["content-encoding"]).filter((c) => c !== "identity");
  if (method === "HEAD" || codings.length === 0) return response;
  let body: Readable = response;
  for (const coding of codings.reverse()) {
    const decoder = decoderFor(coding);
    body.once("error", (error) => decoder.destroy(error));
    body = body.pipe(decoder);
  }
  return body;
}

/** Bytes a body may queue before the socket is paused. */
const QUEUE_BYTES = 1 << 20;

/**
 * The body's chunks queued as they arrive ('data' events), paused past QUEUE_BYTES. Not the async
 * iterator: its read() joins what is buffered into a copy, and its promise chain per chunk costs
 * main-thread time that the extraction needs (measured: ~100 ms per 256 MB through a mirror).
 */
class BodyQueue {
  private readonly chunks: Buffer[] = [];
  private bytes = 0;
  private ended = false;
  private failure: Error | undefined;
  private wake: (() => void) | undefined;
  constructor(private readonly body: Readable) {
    body.on("data", (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.bytes += chunk.length;
      if (this.bytes >= QUEUE_BYTES) body.pause();
      this.notify();
    });
    body.once("end", () => this.finish());
    body.once("close", () => this.finish());
    body.once("error", (error) => {
      this.failure ??= error;
      this.notify();
    });
  }
  /** The next chunk, or undefined at the end (whole or not); rejects with the body's error. */
  async next(): Promise<Buffer | undefined> {
    for (;;) {
      const chunk = this.chunks.shift();
      if (chunk !== undefined) {
        this.bytes -= chunk.length;
        if (this.bytes < QUEUE_BYTES && this.body.isPaused()) this.body.resume();
        return chunk;
      }
      if (this.failure) throw this.failure;
      if (this.ended) return undefined;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }
  private finish(): void {
    this.ended = true;
    this.notify();
  }
  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}

function replyOf(sent: Sent, request: OutgoingRequest): Reply {
  const { response } = sent;
  const body = decoded(response, request.method);
  const queue = new BodyQueue(body);
  // A parse error (HPE_INVALID_CHUNK_SIZE...) surfaces on the request; the body only sees "aborted".
  const read = async (): Promise<Buffer | undefined> => {
    try {
      return await queue.next();
    } catch (error) {
      throw sent.laterError() ?? error;
    }
  };
  return {
    status: response.statusCode ?? 0,
    url: request.url,
    header: (name) => {
      const value = response.headers[name.toLowerCase()];
      return Array.isArray(value) ? value.join(", ") : value;
    },
    next: async () => {
      const next = await read();
      if (next !== undefined) return next;
      // node:http ends a body cut short by a closed connection without an error: say so.
      if (!response.complete) {
        throw (
          sent.laterError() ??
          Object.assign(new Error("the connection closed mid-body"), { code: "ECONNRESET" })
        );
      }
      return null;
    },
    cancel: () => {
      response.destroy();
      body.destroy();
    },
  };
}

/** The fast path: used when no proxy and no custom fetch are involved. */
export function nodeTransport(options: NodeTransportOptions): Transport {
  return {
    limits: options.limits,
    send: async (request) => replyOf(await sendOnce(request, options), request),
  };
}
