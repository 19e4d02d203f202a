/**
 * An HTTP proxy on 127.0.0.1 in front of a test server. It records every request and can hold
 * one that matches a predicate until the test releases it: the way to stop a client at an exact
 * step of a protocol (then kill it) without any timing.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";

export interface ProxiedRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
}

export interface Hold {
  /** Resolves when a matching request arrived (it is being held). */
  reached: Promise<ProxiedRequest>;
  /** Let it through. */
  release(): void;
  /** Never deliver it: close its connection (what a crashed client's request becomes). */
  drop(): void;
}

export interface PausingProxy {
  endpoint: string;
  requests: ProxiedRequest[];
  /** Hold the `nth` (1-based) request that matches from now on. */
  holdWhen(match: (request: ProxiedRequest) => boolean, nth?: number): Hold;
  close(): Promise<void>;
}

export async function startPausingProxy(target: string): Promise<PausingProxy> {
  const targetUrl = new URL(target);
  const requests: ProxiedRequest[] = [];
  const holds: {
    match: (r: ProxiedRequest) => boolean;
    remaining: number;
    arrived: (r: ProxiedRequest) => void;
    released: Promise<boolean>;
  }[] = [];

  const server = http.createServer((req, res) => {
    const record: ProxiedRequest = { method: req.method ?? "GET", url: req.url ?? "/", headers: req.headers };
    requests.push(record);
    let wait: Promise<boolean> = Promise.resolve(true);
    for (const hold of holds) {
      if (hold.remaining > 0 && hold.match(record)) {
        hold.remaining--;
        if (hold.remaining === 0) {
          hold.arrived(record);
          wait = hold.released;
        }
      }
    }
    void wait.then((deliver) => {
      if (!deliver) {
        req.destroy();
        res.destroy();
        return;
      }
      if (req.destroyed) return;
      const upstream = http.request(
        {
          host: targetUrl.hostname,
          port: targetUrl.port,
          method: req.method,
          path: req.url,
          headers: req.headers,
        },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      upstream.on("error", () => res.destroy());
      req.pipe(upstream);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests,
    holdWhen(match, nth = 1) {
      let arrived!: (r: ProxiedRequest) => void;
      let settle!: (deliver: boolean) => void;
      const reached = new Promise<ProxiedRequest>((resolve) => (arrived = resolve));
      const released = new Promise<boolean>((resolve) => (settle = resolve));
      holds.push({ match, remaining: nth, arrived, released });
      return { reached, release: () => settle(true), drop: () => settle(false) };
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
