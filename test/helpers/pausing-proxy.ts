/**
 * An HTTP proxy on 127.0.0.1 in front of a test server. It records every request and can hold
 * one that matches a predicate until the test releases it: the way to stop a client at an exact
 * step of a protocol (then kill it) without any timing.
 */
import http from "node:http";
import { type RequestRecord, startLocalServer } from "./local-server.js";

export type { RequestRecord } from "./local-server.js";

export interface Hold {
  /** Resolves when a matching request arrived (it is being held). */
  reached: Promise<RequestRecord>;
  /** Let it through. */
  release(): void;
  /** Never deliver it: close its connection (what a crashed client's request becomes). */
  drop(): void;
}

export interface PausingProxy {
  endpoint: string;
  requests: RequestRecord[];
  /** Hold the `nth` (1-based) request that matches from now on. */
  holdWhen(match: (request: RequestRecord) => boolean, nth?: number): Hold;
  close(): Promise<void>;
}

export async function startPausingProxy(target: string): Promise<PausingProxy> {
  const targetUrl = new URL(target);
  const holds: {
    match: (r: RequestRecord) => boolean;
    remaining: number;
    arrived: (r: RequestRecord) => void;
    released: Promise<boolean>;
  }[] = [];

  const local = await startLocalServer((req, res, record) => {
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
          // No keep-alive: a reused socket that the target already closed would reset this
          // request, and a client cannot retry a PUT whose stream body is gone.
          agent: false,
        },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          // Settles once the last bytes written are in the kernel's hands (or the write failed).
          let flushed = Promise.resolve();
          answer.on("data", (chunk: Buffer) => {
            flushed = new Promise((done) => res.write(chunk, () => done()));
            if (res.writableNeedDrain) {
              answer.pause();
              res.once("drain", () => answer.resume());
            }
          });
          answer.once("end", () => res.end());
          // A target that breaks off mid-body breaks this answer off too (never a stall), once every
          // byte it did send has left.
          answer.once("close", () => {
            if (!answer.complete) void flushed.then(() => res.destroy());
          });
        },
      );
      upstream.on("error", () => res.destroy());
      req.pipe(upstream);
    });
  });
  return {
    endpoint: local.origin,
    requests: local.requests,
    holdWhen(match, nth = 1) {
      let arrived!: (r: RequestRecord) => void;
      let settle!: (deliver: boolean) => void;
      const reached = new Promise<RequestRecord>((resolve) => (arrived = resolve));
      const released = new Promise<boolean>((resolve) => (settle = resolve));
      holds.push({ match, remaining: nth, arrived, released });
      return { reached, release: () => settle(true), drop: () => settle(false) };
    },
    close: () => local.close(),
  };
}
