/**
 * Who may ask the mirror for what: the hosts it knows (an allow-list, so it is never an open
 * proxy), the addresses its upstream requests may reach (mirrorAddressGuard: never link-local or
 * cloud metadata, loopback and private only under the --upstream bases' names), the bearer
 * token, and CORS.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { isIP } from "node:net";
import { type AddressGuard, classifyHost, createAddressGuard } from "../net/address-guard.js";

export const DEFAULT_HOSTS = ["tfhub.dev", "www.kaggle.com", "kaggle.com"] as const;

/**
 * Link-local and cloud metadata addresses and names (169.254.0.0/16, fe80::/10, fd00:ec2::254,
 * ...), in any spelling a URL host may have (`0xa9fea9fe`, `[::ffff:169.254.169.254]`).
 */
export function isForbiddenAddress(host: string): boolean {
  let hostname = host;
  try {
    hostname = new URL(`http://${host.includes(":") && !host.startsWith("[") ? `[${host}]` : host}/`)
      .hostname;
  } catch {
    // not a URL host: judged as given
  }
  const kind = classifyHost(hostname);
  return kind === "metadata" || kind === "link-local";
}

const GUARD_HINT =
  "The mirror never fetches link-local or cloud metadata addresses, and reaches loopback and private addresses only under the host names of its --upstream bases; an upstream that redirects (or a name that resolves) elsewhere is refused. See docs/serve.md, Security.";

/**
 * The mirror's address guard: loopback and private addresses only under the host names of the
 * `--upstream` bases (an intranet hub, a test hub on 127.0.0.1), link-local and metadata never.
 */
export function mirrorAddressGuard(
  upstreams: ReadonlyMap<string, string>,
  pinned: ReadonlyMap<string, readonly string[]> = new Map(),
): AddressGuard {
  const internalHosts = [...upstreams.values()].map((base) => new URL(base).hostname);
  return createAddressGuard({ internalHosts, pinned, hint: GUARD_HINT });
}

/** `HOST=ADDRESS[,ADDRESS...]` (`--resolve`) → [host, addresses], or an error message. */
export function parseResolve(spec: string): [string, string[]] | string {
  const eq = spec.indexOf("=");
  if (eq <= 0) return `--resolve needs HOST=ADDRESS[,ADDRESS...], not "${spec}".`;
  const host = spec.slice(0, eq).trim().toLowerCase();
  const addresses = spec
    .slice(eq + 1)
    .split(",")
    .map((address) => address.trim().replace(/^\[|\]$/g, ""));
  const bad = addresses.find((address) => isIP(address) === 0);
  if (bad !== undefined) return `--resolve ${host}: "${bad}" is not an IP address.`;
  return [host, addresses];
}

export interface Policy {
  /** Hosts a handle may name (lower case, with a port when one is part of the name). */
  hosts: ReadonlySet<string>;
  /** Host → base URL the requests for it go to. */
  upstreams: ReadonlyMap<string, string>;
  token: string | undefined;
  /** Origins allowed by CORS; "*" for any. */
  corsOrigins: readonly string[];
  /** What every upstream request and its redirects may reach (see mirrorAddressGuard). */
  addressGuard?: AddressGuard | undefined;
}

/** `HOST=BASEURL` → [host, base], or an error message. */
export function parseUpstream(spec: string): [string, string] | string {
  const eq = spec.indexOf("=");
  if (eq <= 0) return `--upstream needs HOST=BASEURL, not "${spec}".`;
  const host = spec.slice(0, eq).trim().toLowerCase();
  const base = spec.slice(eq + 1).trim();
  let url: URL;
  try {
    url = new URL(base);
  } catch {
    return `--upstream ${host}: "${base}" is not a URL.`;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    return `--upstream ${host}: the base must be http:// or https://.`;
  }
  if (isForbiddenAddress(host) || isForbiddenAddress(url.hostname)) {
    return `--upstream ${host}=${url.origin}: link-local and cloud metadata addresses are never fetched.`;
  }
  if (url.search || url.hash || url.username) {
    return `--upstream ${host}: the base takes no query or credentials.`;
  }
  return [host, url.href.replace(/\/+$/, "")];
}

/** Compare the Authorization header with the token in constant time. */
export function authorized(req: IncomingMessage, token: string | undefined): boolean {
  if (token === undefined) return true;
  const header = req.headers.authorization ?? "";
  const given = /^Bearer\s+(.+)$/i.exec(header)?.[1]?.trim() ?? "";
  const digest = (text: string): Buffer => createHash("sha256").update(text).digest();
  return timingSafeEqual(digest(given), digest(token)) && given.length > 0;
}

/** The CORS headers for a request's Origin (none when it is not allowed). */
export function corsHeaders(req: IncomingMessage, policy: Policy): Record<string, string> {
  const origin = req.headers.origin;
  if (policy.corsOrigins.includes("*")) {
    return {
      "access-control-allow-origin": "*",
      "access-control-expose-headers": "ETag, Content-Length, Content-Range, Accept-Ranges",
    };
  }
  if (origin === undefined || !policy.corsOrigins.includes(origin)) return { vary: "Origin" };
  return {
    "access-control-allow-origin": origin,
    "access-control-allow-credentials": "true",
    "access-control-expose-headers": "ETag, Content-Length, Content-Range, Accept-Ranges",
    vary: "Origin",
  };
}

/** Headers answering a CORS preflight (OPTIONS). */
export function preflightHeaders(req: IncomingMessage, policy: Policy): Record<string, string> {
  const base = corsHeaders(req, policy);
  if (!base["access-control-allow-origin"]) return base;
  return {
    ...base,
    "access-control-allow-methods": "GET, HEAD, OPTIONS",
    "access-control-allow-headers": "Authorization, Range, If-None-Match, If-Range",
    "access-control-max-age": "600",
  };
}
