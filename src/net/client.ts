/**
 * The HTTP client for model hosts: undici's fetch with one dispatcher that applies the connect
 * timeout, HTTP_PROXY/HTTPS_PROXY/NO_PROXY (Node 20's global fetch ignores them) and
 * TFHUB_DISABLE_CERT_VALIDATION. One client per download; close it when done.
 */
import { Agent, Pool, ProxyAgent, type Dispatcher, fetch as undiciFetch } from "undici";
import type { FetchFunction } from "./http.js";
import { type ProxyEnv, proxyForUrl } from "./proxy.js";

export interface NetworkSettings {
  /** TCP (and TLS) connect timeout, ms. */
  connectTimeoutMs: number;
  /** Longest wait for response headers or for the next body bytes, ms. */
  idleTimeoutMs: number;
  /** TFHUB_DISABLE_CERT_VALIDATION=true: accept any TLS certificate. */
  insecureTls: boolean;
  proxy: ProxyEnv;
}

export interface HttpClient {
  fetch: FetchFunction;
  close(): Promise<void>;
}

export function createHttpClient(settings: NetworkSettings): HttpClient {
  const tls = {
    timeout: settings.connectTimeoutMs,
    ...(settings.insecureTls ? { rejectUnauthorized: false } : {}),
  };
  // hubcache's own idle timer (src/net/download.ts) is the one that fires; undici's is a backstop.
  const backstopMs = settings.idleTimeoutMs + 5000;
  const proxies = new Map<string, ProxyAgent>();
  const agent = new Agent({
    connect: tls,
    headersTimeout: backstopMs,
    bodyTimeout: backstopMs,
    factory: (origin: string | URL, options: object): Dispatcher => {
      const proxyUrl = proxyForUrl(new URL(String(origin)), settings.proxy);
      if (proxyUrl === undefined) return new Pool(origin, options as Pool.Options);
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
    undiciFetch(
      input as Parameters<typeof undiciFetch>[0],
      { ...(init as object), dispatcher: agent } as Parameters<typeof undiciFetch>[1],
    ) as unknown as Promise<Response>;
  return {
    fetch,
    close: async () => {
      await agent.destroy().catch(() => undefined);
      await Promise.all([...proxies.values()].map((proxy) => proxy.destroy().catch(() => undefined)));
    },
  };
}
