/**
 * The base of every fake host in the tests: an HTTP (or HTTPS) server on 127.0.0.1, port 0 unless
 * told otherwise, that records each request as one `RequestRecord` before its handler runs, and
 * tracks its sockets so that close() never hangs on a keep-alive connection, a stalled answer or a
 * request the test holds. The fakes (hub-server, static-server, the GCS fake, ...) only say how to
 * answer.
 */
import http from "node:http";
import https from "node:https";
import type { AddressInfo, Socket } from "node:net";

/** One request as the server saw it. */
export interface RequestRecord {
  method: string;
  /** The URL's path, without the query. */
  path: string;
  /** The request target as sent: path and query. */
  url: string;
  headers: http.IncomingHttpHeaders;
}

/**
 * Answers one request. A rejected promise (or a throw) destroys the response, so a broken fake
 * shows up as a failed request in the test, never as a hang.
 */
export type RequestHandler = (
  req: http.IncomingMessage,
  res: http.ServerResponse,
  record: RequestRecord,
) => void | Promise<void>;

export interface LocalServerOptions {
  /** Serve HTTPS with this key and certificate (PEM). */
  tls?: { key: string; cert: string };
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0: a free port. */
  port?: number;
}

export interface LocalServer {
  /** The node server, for tests that need more (a `connect` listener for a proxy, ...). */
  server: http.Server;
  /** `http://127.0.0.1:PORT` (or https); only once listening. */
  readonly origin: string;
  /** `origin` + `pathname`. */
  url(pathname: string): string;
  /** Every request so far, in arrival order. */
  requests: RequestRecord[];
  /** The requests whose path (without query) is `pathname`. */
  requestsTo(pathname: string): RequestRecord[];
  /** Start listening; resolves to the origin. */
  listen(): Promise<string>;
  /** Destroy every open connection and stop listening. Safe to call twice. */
  close(): Promise<void>;
}

export function recordOf(req: http.IncomingMessage): RequestRecord {
  const url = req.url ?? "/";
  return {
    method: req.method ?? "GET",
    path: new URL(url, "http://127.0.0.1").pathname,
    url,
    headers: req.headers,
  };
}

/** A server that is not listening yet (see `startLocalServer` for the usual case). */
export function createLocalServer(handler: RequestHandler, options: LocalServerOptions = {}): LocalServer {
  const requests: RequestRecord[] = [];
  const sockets = new Set<Socket>();
  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const record = recordOf(req);
    requests.push(record);
    try {
      void Promise.resolve(handler(req, res, record)).catch(() => res.destroy());
    } catch {
      res.destroy();
    }
  };
  const server: http.Server = options.tls
    ? https.createServer({ key: options.tls.key, cert: options.tls.cert }, onRequest)
    : http.createServer(onRequest);
  // For HTTPS this is the TCP socket under the TLS one: destroying it ends both.
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  const scheme = options.tls ? "https" : "http";
  const host = options.host ?? "127.0.0.1";
  let origin: string | undefined;
  const listeningOrigin = (): string => {
    if (origin === undefined) throw new Error("the local server is not listening yet");
    return origin;
  };
  return {
    server,
    get origin(): string {
      return listeningOrigin();
    },
    url: (pathname) => `${listeningOrigin()}${pathname}`,
    requests,
    requestsTo: (pathname) => requests.filter((r) => r.path === pathname),
    async listen() {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(options.port ?? 0, host, () => {
          server.off("error", reject);
          resolve();
        });
      });
      origin = `${scheme}://${host}:${(server.address() as AddressInfo).port}`;
      return origin;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        if (!server.listening) return resolve();
        server.close(() => resolve());
      }),
  };
}

/** A server listening on 127.0.0.1 (a free port unless `options.port`). */
export async function startLocalServer(
  handler: RequestHandler,
  options: LocalServerOptions = {},
): Promise<LocalServer> {
  const local = createLocalServer(handler, options);
  await local.listen();
  return local;
}
