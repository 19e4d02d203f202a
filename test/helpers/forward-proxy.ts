/**
 * A forward HTTP proxy on 127.0.0.1, as HTTP_PROXY/HTTPS_PROXY point to: CONNECT tunnels (as
 * undici uses them, for http and https targets alike) and absolute-form GETs. It records what it
 * was asked, can refuse every CONNECT with a status, and answers 502 when the target cannot be
 * reached, as squid and other real proxies do.
 */
import http from "node:http";
import net from "node:net";
import { createLocalServer } from "./local-server.js";

export interface ProxySeen {
  method: string;
  target: string;
  auth: string | undefined;
}

export interface ForwardProxy {
  url: string;
  seen: ProxySeen[];
  /** Answer CONNECT with this status instead of tunnelling. */
  refuseWith: number | undefined;
  close(): Promise<void>;
}

export async function startForwardProxy(): Promise<ForwardProxy> {
  const seen: ProxySeen[] = [];
  // The tunnels' upstream sockets; the base closes the client side.
  const tunnels = new Set<net.Socket>();
  const state: { refuseWith: number | undefined } = { refuseWith: undefined };
  const local = createLocalServer((req, res) => {
    seen.push({
      method: req.method ?? "GET",
      target: req.url ?? "",
      auth: req.headers["proxy-authorization"],
    });
    const upstream = http.request(req.url ?? "", { method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on("error", () => (res.headersSent ? res.destroy() : res.writeHead(502).end()));
    req.pipe(upstream);
  });
  local.server.on("connect", (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
    seen.push({ method: "CONNECT", target: req.url ?? "", auth: req.headers["proxy-authorization"] });
    if (state.refuseWith !== undefined) {
      client.end(`HTTP/1.1 ${state.refuseWith} Refused\r\nContent-Length: 0\r\n\r\n`);
      return;
    }
    const [hostname, port] = (req.url ?? "").split(":");
    let tunnelled = false;
    const upstream = net.connect(Number(port), hostname ?? "127.0.0.1", () => {
      tunnelled = true;
      client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    tunnels.add(upstream);
    upstream.on("close", () => tunnels.delete(upstream));
    upstream.on("error", () => {
      if (tunnelled) client.destroy();
      else client.end("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
    });
    // A target that closes the tunnel (a cut body) closes it for the client too.
    upstream.on("close", () => client.destroy());
    client.on("error", () => upstream.destroy());
    client.on("close", () => upstream.destroy());
  });
  const url = await local.listen();
  return {
    url,
    seen,
    get refuseWith() {
      return state.refuseWith;
    },
    set refuseWith(value: number | undefined) {
      state.refuseWith = value;
    },
    close: () => {
      for (const socket of tunnels) socket.destroy();
      return local.close();
    },
  };
}
