/**
 * HTTP_PROXY / HTTPS_PROXY / NO_PROXY, read from the environment hubcache was given (not only
 * process.env), with the conventions curl and undici share. Pure functions.
 */
import type { Env } from "../config.js";

export interface ProxyEnv {
  httpProxy: string | undefined;
  httpsProxy: string | undefined;
  noProxy: string;
}

/** Lower-case names win, as in curl; empty values count as unset. */
export function readProxyEnv(env: Env): ProxyEnv {
  const pick = (...names: string[]): string | undefined => {
    for (const name of names) {
      const value = env[name];
      if (value !== undefined && value.trim() !== "") return value.trim();
    }
    return undefined;
  };
  const httpProxy = pick("http_proxy", "HTTP_PROXY");
  return {
    httpProxy,
    httpsProxy: pick("https_proxy", "HTTPS_PROXY") ?? httpProxy,
    noProxy: pick("no_proxy", "NO_PROXY") ?? "",
  };
}

const DEFAULT_PORTS: Record<string, number> = { "http:": 80, "https:": 443 };

/** Does NO_PROXY exempt this host? Entries: `*`, `host`, `.suffix`/`*.suffix`, each with an optional `:port`. */
export function bypassesProxy(url: URL, noProxy: string): boolean {
  const host = url.hostname.replace(/^\[|\]$/g, "").toLowerCase();
  const port = Number(url.port) || DEFAULT_PORTS[url.protocol] || 0;
  for (const raw of noProxy.split(/[\s,]+/)) {
    if (!raw) continue;
    if (raw === "*") return true;
    const match = /^(.+?)(?::(\d+))?$/.exec(raw.toLowerCase());
    if (!match) continue;
    const entryHost = (match[1] ?? "").replace(/^\[|\]$/g, "");
    const entryPort = match[2] === undefined ? 0 : Number(match[2]);
    if (entryPort && entryPort !== port) continue;
    if (entryHost.startsWith("*.") || entryHost.startsWith(".")) {
      const suffix = entryHost.replace(/^\*/, "");
      if (host.endsWith(suffix) || host === suffix.slice(1)) return true;
    } else if (host === entryHost || host.endsWith(`.${entryHost}`)) {
      return true;
    }
  }
  return false;
}

/** The proxy URL to use for `url`, or undefined to connect directly. */
export function proxyForUrl(url: URL, proxy: ProxyEnv): string | undefined {
  const chosen =
    url.protocol === "https:" ? proxy.httpsProxy : url.protocol === "http:" ? proxy.httpProxy : undefined;
  if (!chosen || bypassesProxy(url, proxy.noProxy)) return undefined;
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(chosen) ? chosen : `http://${chosen}`;
}
