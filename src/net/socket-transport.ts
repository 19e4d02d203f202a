/**
 * Plain-http GETs read straight from the socket. node:http hands over a body as a new 64 KiB
 * buffer per socket read, each through its parser and stream events: for 256 MiB that is about
 * 0.1 s of main-thread CPU and as much again in the kernel (fresh pages), which a client of a
 * `hubcache serve` mirror on the LAN, with nothing to inflate, spends more on than on anything
 * else. Here the socket reads (net's `onread`) land in 1 MiB blocks one after the other, and the
 * body is handed over as slices of them, never copied (see docs/performance.md).
 *
 * The answer is read as HTTP/1.1 says (RFC 9112): informational answers skipped, a body framed by
 * Transfer-Encoding: chunked, by Content-Length or by the end of the connection, content codings
 * decoded as node-transport.ts does. Each request has a connection of its own (`connection:
 * close`). HEAD and https requests go over `fallback` (node:http(s)). Errors carry node:http's
 * codes (ECONNRESET for a body cut short, HPE_* for a malformed answer, UND_ERR_CONNECT_TIMEOUT),
 * so retries decide alike on both.
 */
import http from "node:http";
import net from "node:net";
import { Readable, pipeline } from "node:stream";
import { decoderFor, failSlowConnect, guardedLookup } from "./node-transport.js";
import {
  DECODED_CODINGS,
  type OutgoingRequest,
  type Reply,
  type Transport,
  contentCodings,
} from "./transport.js";

/** Socket reads land in blocks of this size. */
const BLOCK_BYTES = 1 << 20;
/** A read is never offered less room than this: a new block starts instead. */
const MIN_READ_ROOM = 64 << 10;
/**
 * Body bytes read and not yet taken, past which the socket pauses. 4 MiB raised a cold resolve's peak
 * RSS from 117 to 155 MB (blocks pinned by their slices), and was no faster.
 */
const QUEUE_BYTES = 1 << 20;
/** As node:http's default maxHeaderSize: the head, and the lines of a chunked body. */
const MAX_HEAD_BYTES = 16 << 10;

export interface SocketTransportOptions {
  connectTimeoutMs: number;
}

/** The parsed status line and headers of one answer. */
export interface Head {
  status: number;
  /** HTTP/1.1 or later (1.0 answers may not use Transfer-Encoding). */
  http11: boolean;
  /** Each header's values, in order, by lower-case name. */
  fields: Map<string, string[]>;
}

function coded(message: string, code: string, cause?: unknown): Error {
  return Object.assign(new Error(message, cause === undefined ? undefined : { cause }), { code });
}

/** Headers of which node:http keeps the first of several (a second Location or ETag is dropped). */
const FIRST_ONLY = new Set([
  "age",
  "authorization",
  "content-length",
  "content-type",
  "etag",
  "expires",
  "from",
  "host",
  "if-modified-since",
  "if-unmodified-since",
  "last-modified",
  "location",
  "max-forwards",
  "proxy-authorization",
  "referer",
  "retry-after",
  "server",
  "user-agent",
]);

/** A header of `head` as node:http gives it: the first of a FIRST_ONLY one, else all joined. */
export function headerOf(head: Head, name: string): string | undefined {
  const values = head.fields.get(name.toLowerCase());
  if (values === undefined) return undefined;
  return FIRST_ONLY.has(name.toLowerCase()) ? values[0] : values.join(", ");
}

/** The head in `text` (without its blank line), or an HPE_-coded error as node:http gives. */
export function parseHead(text: string): Head {
  const lines = text.split("\r\n");
  const match = /^HTTP\/1\.([01]) (\d{3})(?: [^\r\n]*)?$/.exec(lines[0] ?? "");
  if (!match) throw coded("the answer is not an HTTP/1.1 status line", "HPE_INVALID_CONSTANT");
  const fields = new Map<string, string[]>();
  let last: string[] | undefined;
  for (const line of lines.slice(1)) {
    // A value may not hold CR, LF or NUL (RFC 9110 5.5): refused, as a parser that ends lines at a
    // bare LF would frame the answer otherwise.
    if (/[\0\r\n]/.test(line)) {
      throw coded("the answer has a control character in a header", "HPE_INVALID_HEADER_TOKEN");
    }
    if ((line.startsWith(" ") || line.startsWith("\t")) && last !== undefined) {
      // obs-fold: the line goes on the previous value, joined by a space (RFC 9112 5.2).
      last[last.length - 1] = `${last[last.length - 1] ?? ""} ${line.replace(/^[ \t]+|[ \t]+$/g, "")}`;
      continue;
    }
    const colon = line.indexOf(":");
    const name = line.slice(0, colon).toLowerCase();
    if (colon <= 0 || !/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(name)) {
      throw coded("the answer has a malformed header line", "HPE_INVALID_HEADER_TOKEN");
    }
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "");
    last = fields.get(name);
    if (last === undefined) fields.set(name, (last = []));
    last.push(value);
  }
  return { status: Number(match[2]), http11: match[1] === "1", fields };
}

/** How the body of `head` (the answer to a GET) is framed. */
export type Framing = { kind: "length"; bytes: number } | { kind: "chunked" } | { kind: "close" };

export function framingOf(head: Head): Framing {
  const { status, fields } = head;
  if (status === 101 || status === 204 || status === 304) return { kind: "length", bytes: 0 };
  const transfer = fields.get("transfer-encoding");
  if (transfer !== undefined) {
    // Only chunked itself: a transfer coding under it (gzip, chunked) would hand over coded bytes.
    const value = transfer.join(", ");
    if (head.http11 && /^chunked$/i.test(value.trim())) return { kind: "chunked" };
    throw coded(`the answer's Transfer-Encoding "${value}" is not chunked`, "HPE_INVALID_TRANSFER_ENCODING");
  }
  const length = fields.get("content-length");
  if (length === undefined) return { kind: "close" };
  const values = new Set(length.flatMap((value) => value.split(",").map((one) => one.trim())));
  const [only] = values;
  if (values.size !== 1 || only === undefined || !/^\d{1,15}$/.test(only)) {
    throw coded(
      `the answer's Content-Length "${length.join(", ")}" is not one length`,
      "HPE_UNEXPECTED_CONTENT_LENGTH",
    );
  }
  return { kind: "length", bytes: Number(only) };
}

/** The request as written on the wire; node:http's own checks refuse bad names and values. */
function requestHead(url: URL, headers: Record<string, string>): string {
  let head = `GET ${url.pathname}${url.search} HTTP/1.1\r\nhost: ${url.host}\r\nconnection: close\r\n`;
  for (const [name, value] of Object.entries(headers)) {
    // Each request has a connection of its own, to the URL's host.
    if (/^(host|connection)$/i.test(name)) continue;
    http.validateHeaderName(name);
    http.validateHeaderValue(name, value);
    head += `${name}: ${value}\r\n`;
  }
  return `${head}\r\n`;
}

type State = "head" | "data" | "size" | "data-end" | "trailer" | "done";

/**
 * One connection's bytes: the blocks its reads land in, parsed from `cursor` as they come (head,
 * then body framing), the body queued as slices of the blocks until `next()` takes them.
 */
class SocketReader {
  private block = Buffer.allocUnsafe(BLOCK_BYTES);
  private filled = 0;
  /** The first byte of `block` not parsed yet: only ever a part of a head or a framing line. */
  private cursor = 0;
  private state: State = "head";
  /** Body (or chunk) bytes still to come in state "data". */
  private left = 0;
  private framing: Framing | undefined;
  private trailerBytes = 0;
  private readonly queue: Buffer[] = [];
  /** Body bytes in `queue`. */
  private queued = 0;
  private closed = false;
  private failure: Error | undefined;
  private wake: (() => void) | undefined;
  private paused = false;
  head: Head | undefined;
  readonly socket: net.Socket;

  constructor(options: net.TcpNetConnectOpts) {
    this.socket = net.connect({
      ...options,
      onread: { buffer: () => this.room(), callback: (bytes) => this.received(bytes) },
    });
    this.socket.once("end", () => this.close());
    this.socket.once("close", () => this.close());
    this.socket.on("error", (error) => this.fail(error));
  }

  /** Where the next read lands: the rest of this block, or a new one starting with the unparsed bytes. */
  private room(): Buffer {
    if (this.block.length - this.filled < MIN_READ_ROOM) {
      const next = Buffer.allocUnsafe(BLOCK_BYTES);
      this.filled = this.block.copy(next, 0, this.cursor, this.filled);
      this.cursor = 0;
      this.block = next;
    }
    return this.block.subarray(this.filled);
  }

  private received(bytes: number): boolean {
    this.filled += bytes;
    try {
      this.parse();
    } catch (error) {
      this.fail(error as Error);
      return false;
    }
    this.notify();
    if (this.state === "done") {
      // connection: close was asked for; nothing more is read.
      queueMicrotask(() => this.socket.destroy());
      return false;
    }
    this.paused = this.queued >= QUEUE_BYTES;
    return !this.paused;
  }

  /** Parse what has come, as far as it goes. */
  private parse(): void {
    for (;;) {
      const before = this.cursor;
      if (this.state === "data") this.data();
      else if (this.state === "head") this.readHead();
      else if (this.state === "size") this.chunkSize();
      else if (this.state === "data-end") this.chunkEnd();
      else if (this.state === "trailer") this.trailer();
      if (this.cursor === before || this.state === "done") return;
    }
  }

  /** The next line from `cursor` (without its CRLF), or undefined until it has come. */
  private line(): string | undefined {
    const end = this.find("\r\n", "the answer's framing is too long");
    if (end === undefined) return undefined;
    const text = this.block.toString("latin1", this.cursor, end);
    this.cursor = end + 2;
    return text;
  }

  /** Where `mark` starts from `cursor` on, within MAX_HEAD_BYTES (undefined until it has come). */
  private find(mark: string, tooLong: string): number | undefined {
    const found = this.block.subarray(this.cursor, this.filled).indexOf(mark);
    if (found > MAX_HEAD_BYTES || (found < 0 && this.filled - this.cursor > MAX_HEAD_BYTES)) {
      throw coded(tooLong, "HPE_HEADER_OVERFLOW");
    }
    return found < 0 ? undefined : this.cursor + found;
  }

  private readHead(): void {
    const end = this.find("\r\n\r\n", "the answer's headers are too long");
    if (end === undefined) return;
    const head = parseHead(this.block.toString("latin1", this.cursor, end));
    this.cursor = end + 4;
    // An informational answer (100 Continue, 103 Early Hints) comes before the answer.
    if (head.status >= 100 && head.status < 200 && head.status !== 101) return;
    this.framing = framingOf(head);
    this.head = head;
    if (this.framing.kind === "chunked") this.state = "size";
    else if (this.framing.kind === "close") {
      this.state = "data";
      this.left = Infinity;
    } else {
      this.state = this.framing.bytes === 0 ? "done" : "data";
      this.left = this.framing.bytes;
    }
  }

  /** Body bytes up to `left`, queued as a slice of the block (joined to the last one if they touch). */
  private data(): void {
    const bytes = Math.min(this.filled - this.cursor, this.left);
    if (bytes === 0) return;
    const last = this.queue.at(-1);
    const offset = this.block.byteOffset + this.cursor;
    if (last && last.buffer === this.block.buffer && last.byteOffset + last.length === offset) {
      this.queue[this.queue.length - 1] = Buffer.from(last.buffer, last.byteOffset, last.length + bytes);
    } else {
      this.queue.push(this.block.subarray(this.cursor, this.cursor + bytes));
    }
    this.queued += bytes;
    this.cursor += bytes;
    this.left -= bytes;
    if (this.left > 0) return;
    this.state = this.framing?.kind === "chunked" ? "data-end" : "done";
  }

  private chunkSize(): void {
    const line = this.line();
    if (line === undefined) return;
    const match = /^([0-9a-fA-F]{1,12})[ \t]*(?:;.*)?$/.exec(line);
    if (!match) throw coded("the answer has a malformed chunk size", "HPE_INVALID_CHUNK_SIZE");
    this.left = parseInt(match[1] ?? "", 16);
    this.state = this.left === 0 ? "trailer" : "data";
  }

  private chunkEnd(): void {
    if (this.filled - this.cursor < 2) return;
    if (this.block[this.cursor] !== 0x0d || this.block[this.cursor + 1] !== 0x0a) {
      throw coded("a chunk of the answer does not end with CRLF", "HPE_STRICT");
    }
    this.cursor += 2;
    this.state = "size";
  }

  private trailer(): void {
    const line = this.line();
    if (line === undefined) return;
    this.trailerBytes += line.length + 2;
    if (this.trailerBytes > MAX_HEAD_BYTES) {
      throw coded("the answer's trailers are too long", "HPE_HEADER_OVERFLOW");
    }
    if (line === "") this.state = "done";
  }

  /** The head and framing, once they have come (rejects if the connection fails first). */
  async answer(): Promise<Head> {
    for (;;) {
      if (this.head) return this.head;
      if (this.failure) throw this.failure;
      if (this.closed) throw coded("socket hang up", "ECONNRESET");
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  /** The next body bytes; null at the end; rejects when the body breaks. */
  async next(): Promise<Buffer | null> {
    for (;;) {
      const slice = this.queue.shift();
      if (slice) {
        this.queued -= slice.length;
        if (this.paused && this.queued < QUEUE_BYTES) {
          this.paused = false;
          this.socket.resume();
        }
        return slice;
      }
      if (this.failure) throw this.failure;
      if (this.state === "done") return null;
      if (this.closed) {
        // Without a length the end of the connection is the end of the body; otherwise it is cut short.
        if (this.framing?.kind === "close") return null;
        throw coded("the connection closed mid-body", "ECONNRESET");
      }
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  fail(error: Error): void {
    this.failure ??= error;
    this.socket.destroy();
    this.notify();
  }

  private close(): void {
    this.closed = true;
    this.notify();
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}

function abortError(signal: AbortSignal): Error {
  return Object.assign(new Error("The operation was aborted", { cause: signal.reason }), {
    name: "AbortError",
    code: "ABORT_ERR",
  });
}

/** Connect, send the request, wait for the answer's head. */
async function sendOnce(request: OutgoingRequest, url: URL, options: SocketTransportOptions) {
  // A header node:http would refuse is refused before any connection is made.
  const wire = requestHead(url, request.headers);
  const reader = new SocketReader({
    host: url.hostname.replace(/^\[(.*)\]$/, "$1"),
    port: Number(url.port || 80),
    ...(request.guard ? { lookup: guardedLookup(request.guard) } : {}),
  });
  const { socket } = reader;
  const onAbort = (): void => reader.fail(abortError(request.signal));
  if (request.signal.aborted) onAbort();
  request.signal.addEventListener("abort", onAbort, { once: true });
  failSlowConnect(socket, options.connectTimeoutMs, (error) => reader.fail(error));
  socket.once("close", () => request.signal.removeEventListener("abort", onAbort));
  // latin1, as node:http writes a head: an ETag with obs-text goes back in If-Range as it came.
  socket.write(wire, "latin1");
  return { reader, head: await reader.answer() };
}

/** The body's reads with its content codings undone, last applied first (as node-transport.ts does). */
function decodedReads(head: Head, next: () => Promise<Buffer | null>): () => Promise<Buffer | null> {
  const codings = contentCodings(headerOf(head, "content-encoding")).filter((c) => c !== "identity");
  // A coding not decoded is refused (request.ts) before the body is read.
  if (codings.length === 0 || codings.some((c) => !DECODED_CODINGS.has(c))) return next;
  let reads: AsyncIterator<Buffer> | undefined;
  // Built on the first read: an answer cancelled unread (a redirect, a 503) starts no decoder.
  const start = (): AsyncIterator<Buffer> => {
    const source = Readable.from(
      (async function* () {
        for (let chunk = await next(); chunk !== null; chunk = await next()) yield chunk;
      })(),
    );
    const decoders = codings.reverse().map(decoderFor);
    const last = decoders.at(-1) as ReturnType<typeof decoderFor>;
    // Every stage's error ends them all and comes out of the last one's reads.
    pipeline([source, ...decoders], () => undefined);
    return last[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  };
  return async () => {
    reads ??= start();
    const read = await reads.next();
    return read.done === true ? null : read.value;
  };
}

/** GETs of plain http:// URLs read from the socket (above); HEAD and https over `fallback`. */
export function socketTransport(options: SocketTransportOptions, fallback: Transport): Transport {
  return {
    limits: fallback.limits,
    send: async (request): Promise<Reply> => {
      const url = new URL(request.url);
      if (request.method !== "GET" || url.protocol !== "http:") return fallback.send(request);
      const { reader, head } = await sendOnce(request, url, options);
      return {
        status: head.status,
        url: request.url,
        header: (name) => headerOf(head, name),
        next: decodedReads(head, () => reader.next()),
        cancel: () => reader.fail(coded("the body was cancelled", "ABORT_ERR")),
      };
    },
  };
}
