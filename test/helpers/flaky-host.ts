/**
 * A model host on 127.0.0.1 (HTTP or HTTPS) whose every path is scripted by the test: it can
 * answer statuses with Retry-After, cut the connection after some bytes, stall, announce more
 * bytes than it sends, trickle bytes slowly, and serve ranges (206 + Content-Range, If-Range against its ETag) like
 * nginx or cloud storage. It counts requests and body bytes so tests can prove what happened.
 */
import type http from "node:http";
import { type RequestRecord, startLocalServer } from "./local-server.js";

export type { RequestRecord } from "./local-server.js";

/** What one request to a route gets. */
export interface Answer {
  /** A status with no archive (and an optional Retry-After, an HTML body...). */
  status?: number;
  headers?: Record<string, string>;
  /** The bytes to serve (honouring Range when `ranges` is set). */
  body?: Buffer;
  /** Advertise ranges (Accept-Ranges, ETag) and answer Range/If-Range requests with 206. */
  ranges?: boolean;
  etag?: string;
  /** Destroy the socket after writing this many body bytes. */
  cutAfter?: number;
  /** Stop sending after this many body bytes and keep the connection open. */
  stallAfter?: number;
  /** Send no headers at all, keep the connection open. */
  stallBeforeHeaders?: boolean;
  /** Content-Length to announce instead of the real one; the connection is closed after the body. */
  declaredLength?: number;
  /** Send a redirect to this location (a path on the same host, or any URL). */
  redirect?: string;
  /** Write these bytes on the socket as the whole answer (no HTTP framing by the server), then close. */
  raw?: Buffer | string;
  /** Send the body `bytes` at a time, one piece every `everyMs` (a host that barely sends). */
  trickle?: { bytes: number; everyMs: number };
}

/** A route answers each request in turn with the next script item; the last one repeats. */
export type Script = Answer[] | ((request: RequestRecord, index: number) => Answer);

export interface FlakyHost {
  origin: string;
  url(pathname: string): string;
  route(pathname: string, script: Script): void;
  requests: RequestRecord[];
  requestsTo(pathname: string): RequestRecord[];
  /** Body bytes written to sockets, per path. */
  bytesServed(pathname: string): number;
  close(): Promise<void>;
}

export async function startFlakyHost(tls?: { key: string; cert: string }): Promise<FlakyHost> {
  const routes = new Map<string, Script>();
  const counts = new Map<string, number>();
  const served = new Map<string, number>();

  const handler = (req: http.IncomingMessage, res: http.ServerResponse, record: RequestRecord): void => {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    const script = routes.get(url.pathname);
    if (!script) {
      res.writeHead(404, { "content-type": "text/html" }).end("<html><body>Not found</body></html>");
      return;
    }
    const index = counts.get(url.pathname) ?? 0;
    counts.set(url.pathname, index + 1);
    const answer =
      typeof script === "function"
        ? script(record, index)
        : (script[Math.min(index, script.length - 1)] ?? {});
    void respond(url.pathname, req, res, answer);
  };

  async function respond(
    pathname: string,
    req: http.IncomingMessage,
    res: http.ServerResponse,
    answer: Answer,
  ): Promise<void> {
    if (answer.stallBeforeHeaders) return; // the socket stays open until the host closes
    if (answer.raw !== undefined) {
      req.socket.end(answer.raw);
      return;
    }
    if (answer.redirect) {
      res.writeHead(302, { location: answer.redirect }).end();
      return;
    }
    if (answer.body === undefined) {
      res.writeHead(answer.status ?? 200, answer.headers).end();
      return;
    }
    let body = answer.body;
    let status = answer.status ?? 200;
    const headers: Record<string, string> = {
      "content-type": "application/octet-stream",
      ...answer.headers,
    };
    if (answer.ranges) {
      const etag = answer.etag ?? '"v1"';
      headers["accept-ranges"] = "bytes";
      headers.etag = etag;
      const range = /^bytes=(\d+)-$/.exec(String(req.headers.range ?? ""));
      const ifRange = req.headers["if-range"];
      if (range && (ifRange === undefined || ifRange === etag)) {
        const start = Number(range[1]);
        if (start >= body.length) {
          res.writeHead(416, { "content-range": `bytes */${body.length}` }).end();
          return;
        }
        headers["content-range"] = `bytes ${start}-${body.length - 1}/${body.length}`;
        status = 206;
        body = body.subarray(start);
      }
    }
    headers["content-length"] = String(answer.declaredLength ?? body.length);
    if (answer.declaredLength !== undefined) headers.connection = "close";
    res.writeHead(status, headers);
    const limit = Math.min(body.length, answer.cutAfter ?? answer.stallAfter ?? body.length);
    const count = (n: number): void => {
      served.set(pathname, (served.get(pathname) ?? 0) + n);
    };
    const step = answer.trickle?.bytes ?? 16384;
    // Settles once the last piece written is in the kernel's hands (or the write failed).
    let flushed = Promise.resolve();
    for (let offset = 0; offset < limit; offset += step) {
      const piece = body.subarray(offset, Math.min(limit, offset + step));
      count(piece.length);
      flushed = new Promise((r) => res.write(piece, () => r()));
      if (res.writableNeedDrain) await new Promise((r) => res.once("drain", r));
      if (res.destroyed) return;
      if (answer.trickle) await new Promise((r) => setTimeout(r, answer.trickle?.everyMs));
      if (res.destroyed) return;
    }
    if (answer.cutAfter !== undefined && answer.cutAfter < body.length) {
      // Every byte up to the cut has left (none still queued in this process), then the break.
      await flushed;
      res.socket?.destroy();
      return;
    }
    if (answer.stallAfter !== undefined && answer.stallAfter < body.length) return;
    if (answer.declaredLength !== undefined) {
      res.end();
      res.socket?.end();
      return;
    }
    res.end();
  }

  const local = await startLocalServer(handler, tls ? { tls } : {});
  return {
    origin: local.origin,
    url: (pathname) => local.url(pathname),
    route: (pathname, script) => {
      routes.set(pathname, script);
      counts.set(pathname, 0);
    },
    requests: local.requests,
    requestsTo: (pathname) => local.requestsTo(pathname),
    bytesServed: (pathname) => served.get(pathname) ?? 0,
    close: () => local.close(),
  };
}
