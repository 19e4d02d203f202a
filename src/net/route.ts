/**
 * Where http(s) requests for a handle go, when not to the handle's own host:
 * - a client with a mirror (`HUBCACHE_MIRROR=http://host:port`, the `mirror` option): every request
 *   for `https://<host>/<path>?q` goes to `<mirror>/<host>/<path>?q`, with the mirror's token
 *   (`HUBCACHE_MIRROR_TOKEN`) sent to the mirror only;
 * - `hubcache serve --upstream HOST=BASE`: requests for `https://HOST/<path>` go to `BASE/<path>`.
 * Either way the cache key stays the canonical handle: only the request URLs change.
 */
import type { Env } from "../config.js";
import { ErrorCode, HubcacheError } from "../errors.js";
import type { ParsedHandle } from "../handle.js";
import type { AddressGuard } from "./address-guard.js";
import type { Transport } from "./transport.js";
import type { FetchFunction } from "./http-errors.js";
import { redactUrl } from "../redact.js";

export interface RequestRoute {
  /** The URL to request instead of `url` (a URL of the handle's host). */
  rewrite(url: string): string;
  /** Headers to add to a request for `url` (after rewriting): the mirror's token, for the mirror only. */
  headersFor(url: string): Record<string, string>;
  /** A clearer error for a failure that came from the route's target (e.g. an unreachable mirror). */
  explain(error: unknown): unknown;
  /** Checks every hop of every request must pass (the mirror's; see net/address-guard.ts). */
  guard?: AddressGuard | undefined;
  /**
   * Requests go to the `hubcache serve` mirror at this base URL (as the user set it, path prefix
   * and all), which may answer with the files form (extract/file-set.ts), fetched from it too.
   */
  mirrorBase?: string | undefined;
}

/** The parsed handle with its request URLs sent through the route. */
export function routeParsed(parsed: ParsedHandle, route: RequestRoute | undefined): ParsedHandle {
  if (!route) return parsed;
  if (parsed.kind === "http-archive") return { ...parsed, downloadUrl: route.rewrite(parsed.downloadUrl) };
  if (parsed.kind === "http-uncompressed") return { ...parsed, requestUrl: route.rewrite(parsed.requestUrl) };
  return parsed;
}

/**
 * A transport that adds the route's headers (node:http drops them on a redirect to another origin)
 * and carries the route's address guard, if any, to the request layer.
 */
export function routeTransport(transport: Transport, route: RequestRoute): Transport {
  return {
    limits: transport.limits,
    guard: route.guard ?? transport.guard,
    send: (request) =>
      transport.send({ ...request, headers: { ...request.headers, ...route.headersFor(request.url) } }),
  };
}

/** A fetch that adds the route's headers to requests for the route's target. */
export function routeFetch(fetch: FetchFunction, route: RequestRoute): FetchFunction {
  return (input, init) => {
    const href = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
    const extra = route.headersFor(href);
    if (Object.keys(extra).length === 0) return fetch(input, init);
    const headers = new Headers(init?.headers);
    for (const [name, value] of Object.entries(extra)) headers.set(name, value);
    return fetch(input, { ...init, headers });
  };
}

/** `https://<host>/<path>?q` as the mirror spells it: `<base>/<host>/<path>?q`. */
export function mirrorUrlOf(base: string, url: string): string {
  const target = new URL(url);
  if (target.protocol !== "https:") {
    throw new HubcacheError(
      ErrorCode.UNSUPPORTED,
      `A mirror serves https:// handles, and ${redactUrl(url)} is ${target.protocol}//.`,
      { handle: url, hint: "Use the https:// form of the handle, or unset HUBCACHE_MIRROR for this one." },
    );
  }
  return `${base}/${target.host}${target.pathname}${target.search}`;
}

export interface MirrorSettings {
  /** The mirror's base URL, without a trailing slash. */
  base: string;
  token: string | undefined;
}

/** The mirror a client uses: the `mirror` option, else HUBCACHE_MIRROR (empty means none). */
export function mirrorSettings(
  options: { mirror?: string | undefined; mirrorToken?: string | undefined; env?: Env | undefined },
  fallbackEnv: Env = process.env,
): MirrorSettings | undefined {
  const env = options.env ?? fallbackEnv;
  const raw = options.mirror ?? env.HUBCACHE_MIRROR ?? "";
  if (raw.trim() === "") return undefined;
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    url = new URL("invalid:");
  }
  const extras = url.search || url.hash || url.username || url.password || /[?#]/.test(raw);
  if ((url.protocol !== "http:" && url.protocol !== "https:") || extras) {
    throw new HubcacheError(
      ErrorCode.INVALID_CONFIG,
      `The mirror "${redactUrl(raw)}" is not an http(s)://host:port URL.`,
      {
        hint: "Set HUBCACHE_MIRROR (or --mirror) to the address `hubcache serve` prints, e.g. http://10.0.0.5:8080; the token goes in HUBCACHE_MIRROR_TOKEN.",
      },
    );
  }
  const token = options.mirrorToken ?? env.HUBCACHE_MIRROR_TOKEN;
  // Origin and path only: every request URL and the files form's are this plus a path.
  return { base: `${url.origin}${url.pathname.replace(/\/+$/, "")}`, token: token ? token : undefined };
}

/** The route of a client that reads through a `hubcache serve` mirror. */
export function mirrorRoute(mirror: MirrorSettings): RequestRoute {
  const origin = new URL(mirror.base).origin;
  const auth: Record<string, string> = mirror.token ? { authorization: `Bearer ${mirror.token}` } : {};
  return {
    rewrite: (url) => (url.startsWith(`${mirror.base}/`) ? url : mirrorUrlOf(mirror.base, url)),
    headersFor: (url) => (sameOrigin(url, origin) ? auth : {}),
    explain: (error) => explainMirrorError(error, mirror.base),
    mirrorBase: mirror.base,
  };
}

function sameOrigin(url: string, origin: string): boolean {
  try {
    return new URL(url).origin === origin;
  } catch {
    return false;
  }
}

/** Errors reaching the mirror say so, and that there is no fallback to the internet. */
function explainMirrorError(error: unknown, base: string): unknown {
  if (!(error instanceof HubcacheError)) return error;
  const hint = `hubcache reads through the mirror ${base} (HUBCACHE_MIRROR) and never falls back to the internet: start \`hubcache serve\` there, or unset HUBCACHE_MIRROR.`;
  if (error.code === ErrorCode.NETWORK || error.code === ErrorCode.TIMEOUT) {
    return new HubcacheError(error.code, `The mirror ${base} could not be reached. ${error.message}`, {
      handle: error.handle,
      hint,
      cause: error,
    });
  }
  if (error.status === 401) {
    return new HubcacheError(ErrorCode.UNAUTHORIZED, `The mirror ${base} refused the request (HTTP 401).`, {
      handle: error.handle,
      status: 401,
      hint: "Set HUBCACHE_MIRROR_TOKEN to the mirror's token (`hubcache serve --token`).",
      cause: error,
    });
  }
  return error;
}

/**
 * The route of `hubcache serve --upstream HOST=BASE`: mapped hosts go to their base URL. With a
 * guard, every hop of every request (redirects included) is checked against it.
 */
export function upstreamRoute(upstreams: ReadonlyMap<string, string>, guard?: AddressGuard): RequestRoute {
  return {
    guard,
    rewrite: (url) => {
      const target = new URL(url);
      const base = upstreams.get(target.host.toLowerCase());
      if (base === undefined) return url;
      return `${base.replace(/\/+$/, "")}${target.pathname}${target.search}`;
    },
    headersFor: () => ({}),
    explain: (error) => error,
  };
}
