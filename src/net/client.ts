/**
 * The HTTP client for model hosts: undici's fetch with one dispatcher that applies the connect
 * timeout, HTTP_PROXY/HTTPS_PROXY/NO_PROXY (Node 20's global fetch ignores them) and
 * TFHUB_DISABLE_CERT_VALIDATION. One client per download; close it when done.
 */
import type { Dispatcher, ProxyAgent as ProxyAgentType } from "undici";
import type { AddressGuard } from "./address-guard.js";
import type { FetchFunction } from "./http-errors.js";
import { guardedLookup, nodeTransport } from "./node-transport.js";
import { type ProxyEnv, proxyForUrl } from "./proxy.js";
import { socketTransport } from "./socket-transport.js";
import type { TransferLimits } from "./transfer-limits.js";
import { type Transport, fetchTransport } from "./transport.js";

export interface NetworkSettings {
  /** TCP (and TLS) connect timeout, ms. */
  connectTimeoutMs: number;
  /** Longest wait for response headers or for the next body bytes, ms. */
  idleTimeoutMs: number;
  /** TFHUB_DISABLE_CERT_VALIDATION=true: accept any TLS certificate. */
  insecureTls: boolean;
  proxy: ProxyEnv;
  /** Minimum rate and deadline of transfers (see transfer-limits.ts). */
  limits: TransferLimits;
}

export interface HttpClient {
  fetch: FetchFunction;
  close(): Promise<void>;
}

/**
 * undici is loaded only when a proxy or a fetch is actually needed (it costs ~75 ms at start-up).
 * With a guard, direct connections (hosts NO_PROXY exempts) resolve names through its lookup.
 */
export async function createHttpClient(settings: NetworkSettings, guard?: AddressGuard): Promise<HttpClient> {
  const { Agent, Pool, ProxyAgent, fetch: undiciFetch } = await import("undici");
  const tls = {
    timeout: settings.connectTimeoutMs,
    ...(settings.insecureTls ? { rejectUnauthorized: false } : {}),
  };
  // hubcache's own idle timer (src/net/request.ts, download.ts) is the one that fires; undici's is a backstop.
  const backstopMs = settings.idleTimeoutMs + 5000;
  const proxies = new Map<string, ProxyAgentType>();
  const agent = new Agent({
    connect: guard ? { ...tls, lookup: guardedLookup(guard) } : tls,
    headersTimeout: backstopMs,
    bodyTimeout: backstopMs,
    factory: (origin: string | URL, options: object): Dispatcher => {
      const proxyUrl = proxyForUrl(new URL(String(origin)), settings.proxy);
      if (proxyUrl === undefined) return new Pool(origin, options);
      let proxy = proxies.get(proxyUrl);
      if (!proxy) {
        proxy = new ProxyAgent({
          uri: proxyUrl,
          proxyTls: tls,
          requestTls: tls,
          headersTimeout: backstopMs,
          bodyTimeout: backstopMs,
        });
        proxies.set(proxyUrl, proxy);
      }
      return proxy;
    },
  });
  const fetch: FetchFunction = (input, init) =>
    undiciFetch(input as Parameters<typeof undiciFetch>[0], {
      ...(init as object),
      dispatcher: agent,
    }) as unknown as Promise<Response>;
  return {
    fetch,
    close: async () => {
      await agent.destroy().catch(() => undefined);
      await Promise.all([...proxies.values()].map((proxy) => proxy.destroy().catch(() => undefined)));
    },
  };
}

/** The transport and fetch one download (or one remote read) uses, and how to release them. */
export interface HttpStack {
  /** A fetch with hubcache's connect timeout, proxy and TLS settings (undici, created on first use). */
  fetch: FetchFunction;
  transport: Transport;
  close(): Promise<void>;
}

/**
 * The caller's own fetch if given; else undici's fetch when a proxy is configured; else the
 * node:http fast path for bodies (plain-http GETs read from the socket: socket-transport.ts).
 */
export function httpStack(
  settings: NetworkSettings,
  custom?: FetchFunction,
  guard?: AddressGuard,
): HttpStack {
  if (custom) {
    return {
      fetch: custom,
      transport: fetchTransport(custom, settings.limits),
      close: async () => undefined,
    };
  }
  let client: Promise<HttpClient> | undefined;
  const lazyFetch: FetchFunction = async (input, init) =>
    (await (client ??= createHttpClient(settings, guard))).fetch(input, init);
  const viaProxy = Boolean(settings.proxy.httpProxy || settings.proxy.httpsProxy);
  return {
    fetch: lazyFetch,
    transport: viaProxy
      ? fetchTransport(lazyFetch, settings.limits)
      : socketTransport(
          { connectTimeoutMs: settings.connectTimeoutMs },
          nodeTransport({
            insecureTls: settings.insecureTls,
            connectTimeoutMs: settings.connectTimeoutMs,
            limits: settings.limits,
          }),
        ),
    close: async () => {
      if (client) await (await client).close();
    },
  };
}
