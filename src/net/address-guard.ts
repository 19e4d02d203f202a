/**
 * Which addresses a request made on someone else's behalf (the `hubcache serve` mirror) may reach.
 * Pure verdicts, checked by the request layer on every hop's URL (a name or a literal address, as
 * WHATWG URL parsing normalised it: `2852039166`, `0xa9fea9fe` and `0251.0376.0251.0376` are all
 * 169.254.169.254 by then) and by the direct transports on every address a name resolves to, on
 * the connection itself (so DNS rebinding is caught too):
 * - link-local, cloud metadata and reserved addresses are never reached;
 * - loopback, private and unspecified addresses only under the host names the guard was given
 *   (`internalHosts`: the mirror's `--upstream` bases);
 * - anything else (public) is allowed.
 * IPv4 addresses inside IPv6 (::ffff:a.b.c.d, ::a.b.c.d, NAT64, 6to4, Teredo) are judged as the
 * IPv4 address; the local-use NAT64 prefix as the strictest of its readings, and never public.
 */
import { BlockList, isIP, isIPv4 } from "node:net";

export type AddressClass =
  "public" | "loopback" | "private" | "unspecified" | "link-local" | "metadata" | "reserved";

export type Verdict =
  { allowed: true; class: AddressClass } | { allowed: false; class: AddressClass; reason: string };

/** Checks a request layer and a transport apply to every hop of a guarded request. */
export interface AddressGuard {
  /** May a request for `url` be sent? Judges the host name or literal address, before any DNS. */
  allowTarget(url: URL): Verdict;
  /** May a connection for `hostname` use `address` (one of what the name resolved to)? */
  allowAddress(address: string, hostname: string): Verdict;
  /** Fixed addresses for a name instead of DNS (`serve --resolve`); they are checked all the same. */
  pinned(hostname: string): readonly string[] | undefined;
  /** What to tell the user when a request is refused. */
  hint: string;
}

/** A refusal raised inside a transport (e.g. from a DNS lookup); the request layer codes it. */
export class AddressRefused extends Error {
  readonly code = "HUBCACHE_ADDRESS_REFUSED";
  constructor(
    readonly hostname: string,
    readonly verdict: Verdict & { allowed: false },
  ) {
    super(verdict.reason);
  }
}

function blockList(v4: [string, number][], v6: [string, number][]): BlockList {
  const list = new BlockList();
  for (const [net, prefix] of v4) list.addSubnet(net, prefix, "ipv4");
  for (const [net, prefix] of v6) list.addSubnet(net, prefix, "ipv6");
  return list;
}

/**
 * Checked in this order: the first list holding an address gives its class. Built on first use:
 * every process imports the request layer, only a mirror ever classifies an address.
 */
let classes: [AddressClass, BlockList][] | undefined;
const addressClasses = (): [AddressClass, BlockList][] =>
  (classes ??= [
    [
      "metadata",
      blockList(
        [
          ["169.254.169.254", 32], // AWS, GCP, Azure, OpenStack, ...
          ["169.254.170.2", 32], // AWS ECS task metadata
          ["100.100.100.200", 32], // Alibaba Cloud
          ["168.63.129.16", 32], // Azure WireServer (host agent, not link-local)
        ],
        [["fd00:ec2::254", 128]],
      ),
    ],
    ["link-local", blockList([["169.254.0.0", 16]], [["fe80::", 10]])],
    [
      "reserved",
      blockList(
        [
          ["192.0.0.0", 24],
          ["224.0.0.0", 4], // multicast
          ["240.0.0.0", 4], // reserved, and the broadcast address
        ],
        [["ff00::", 8]],
      ),
    ],
    ["loopback", blockList([["127.0.0.0", 8]], [["::1", 128]])],
    ["unspecified", blockList([["0.0.0.0", 8]], [["::", 128]])],
    [
      "private",
      blockList(
        [
          ["10.0.0.0", 8],
          ["172.16.0.0", 12],
          ["192.168.0.0", 16],
          ["100.64.0.0", 10], // carrier-grade NAT
          ["198.18.0.0", 15], // benchmarking
        ],
        [
          ["fc00::", 7], // unique local
          ["fec0::", 10], // site-local (deprecated)
        ],
      ),
    ],
  ]);

/** Host names of metadata services, refused before any DNS. */
const METADATA_NAMES = new Set([
  "metadata.google.internal",
  "metadata.goog",
  "metadata",
  "instance-data",
  "instance-data.ec2.internal",
  "metadata.azure.com",
]);

/** A host as compared: lower case, without IPv6 brackets or a final dot. */
export function hostKey(hostname: string): string {
  let host = hostname.toLowerCase();
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  return host.endsWith(".") ? host.slice(0, -1) : host;
}

/** The eight 16-bit groups of a valid IPv6 address (a dotted IPv4 tail counts as two). */
function ipv6Groups(address: string): number[] {
  const parts = address.split(":");
  const last = parts[parts.length - 1] ?? "";
  if (isIPv4(last)) {
    const [a = 0, b = 0, c = 0, d = 0] = last.split(".").map(Number);
    parts.splice(parts.length - 1, 1, ((a << 8) | b).toString(16), ((c << 8) | d).toString(16));
  }
  const gap = parts.indexOf("");
  if (gap !== -1) {
    const filled = parts.filter((part) => part !== "");
    parts.splice(0, parts.length, ...filled.slice(0, gap), ...Array<string>(8 - filled.length).fill("0"));
    parts.push(...filled.slice(gap));
  }
  return parts.map((part) => parseInt(part, 16));
}

const dotted = (high: number, low: number): string => [high >> 8, high & 255, low >> 8, low & 255].join(".");

/**
 * The IPv4 address an IPv6 one stands for, if any: IPv4-mapped, -translated (::ffff:0:a.b.c.d) or
 * -compatible, NAT64 (64:ff9b::/96), 6to4 (2002:AABB:CCDD::/48, the gateway a.b.c.d), Teredo
 * (2001:0::/32, whose last 32 bits are the client's IPv4 address, inverted) and ISATAP (any prefix,
 * then 0:5efe or 200:5efe and a.b.c.d): each of these reaches that IPv4 address through a
 * translator or a tunnel, so it is judged as that address.
 */
export function embeddedIPv4(address: string): string | undefined {
  const groups = ipv6Groups(address);
  const [g0 = 0, g1 = 0, g2 = 0, , g4 = 0, g5 = 0, g6 = 0, g7 = 0] = groups;
  const high = groups.slice(0, 6).join(":");
  const mapped = high === "0:0:0:0:0:65535" || high === "0:0:0:0:65535:0";
  const nat64 = high === "100:65435:0:0:0:0"; // 64:ff9b::/96
  const compatible = high === "0:0:0:0:0:0" && (g6 !== 0 || g7 > 1); // ::a.b.c.d, but not :: or ::1
  if (mapped || nat64 || compatible) return dotted(g6, g7);
  if (g0 === 0x2002) return dotted(g1, g2); // 6to4
  if (g0 === 0x2001 && g1 === 0) return dotted(g6 ^ 0xffff, g7 ^ 0xffff); // Teredo
  if ((g4 & 0xfdff) === 0 && g5 === 0x5efe) return dotted(g6, g7); // ISATAP: <prefix>:0:5efe:a.b.c.d (or 200:5efe)
  return undefined;
}

/**
 * The local-use NAT64 prefix 64:ff9b:1::/48 (RFC 8215) may carry its IPv4 address at any of the
 * RFC 6052 positions a prefix of /48, /56, /64 or /96 gives (byte 8 is always skipped): every
 * reading, by byte index. The network is local by definition, so it is never less than private.
 */
const LOCAL_NAT64_READINGS = [
  [6, 7, 9, 10],
  [7, 9, 10, 11],
  [9, 10, 11, 12],
  [12, 13, 14, 15],
];

function localNat64Readings(address: string): string[] | undefined {
  const groups = ipv6Groups(address);
  if (groups[0] !== 0x64 || groups[1] !== 0xff9b || groups[2] !== 1) return undefined;
  const bytes = groups.flatMap((group) => [group >> 8, group & 255]);
  return LOCAL_NAT64_READINGS.map((at) => at.map((index) => bytes[index] ?? 0).join("."));
}

/** Classes from the strictest (never reached) to the most open. */
const STRICTNESS: AddressClass[] = [
  "metadata",
  "link-local",
  "reserved",
  "loopback",
  "unspecified",
  "private",
  "public",
];

/** The class of a literal IPv4 or IPv6 address (brackets allowed); undefined for anything else. */
export function classifyAddress(address: string): AddressClass | undefined {
  const host = hostKey(address).split("%")[0] ?? ""; // an IPv6 zone id (fe80::1%eth0) says nothing of the class
  const family = isIP(host);
  if (family === 0) return undefined;
  if (family === 4) return listedClass(host, "ipv4");
  // An IPv6 address is judged by its own prefix and, if it carries an IPv4 address, by that one
  // too: the stricter wins (an ISATAP interface id never makes a private prefix public).
  const readings = localNat64Readings(host);
  const own =
    readings === undefined
      ? listedClass(host, "ipv6")
      : strictest([...readings.map((reading) => listedClass(reading, "ipv4")), "private"]);
  const inner = embeddedIPv4(host);
  return inner === undefined ? own : strictest([own, listedClass(inner, "ipv4")]);
}

function listedClass(address: string, type: "ipv4" | "ipv6"): AddressClass {
  for (const [name, list] of addressClasses()) if (list.check(address, type)) return name;
  return "public";
}

function strictest(classes: AddressClass[]): AddressClass {
  return STRICTNESS.find((name) => classes.includes(name)) ?? "public";
}

/** The class of a host name without DNS: metadata and localhost names; other names are "public". */
export function classifyHost(hostname: string): AddressClass {
  const host = hostKey(hostname);
  const literal = classifyAddress(host);
  if (literal !== undefined) return literal;
  if (METADATA_NAMES.has(host)) return "metadata";
  if (host === "localhost" || host.endsWith(".localhost")) return "loopback";
  return "public";
}

const NEVER = new Set<AddressClass>(["metadata", "link-local", "reserved"]);

export interface AddressGuardOptions {
  /** Host names that may reach loopback, private and unspecified addresses (never link-local). */
  internalHosts?: Iterable<string>;
  /** Name → addresses used instead of DNS. */
  pinned?: ReadonlyMap<string, readonly string[]>;
  hint?: string;
}

export function createAddressGuard(options: AddressGuardOptions = {}): AddressGuard {
  const internal = new Set([...(options.internalHosts ?? [])].map(hostKey));
  const pinned = new Map(
    [...(options.pinned ?? new Map<string, string[]>())].map(([k, v]) => [hostKey(k), v]),
  );
  const judge = (kind: AddressClass, what: string, hostname: string): Verdict => {
    if (kind === "public") return { allowed: true, class: kind };
    if (NEVER.has(kind)) {
      return { allowed: false, class: kind, reason: `${what} is a ${kind} address, which is never fetched` };
    }
    if (internal.has(hostKey(hostname))) return { allowed: true, class: kind };
    return {
      allowed: false,
      class: kind,
      reason: `${what} is a ${kind} address, allowed only for the configured upstream hosts`,
    };
  };
  return {
    allowTarget: (url) => judge(classifyHost(url.hostname), url.host, url.hostname),
    allowAddress: (address, hostname) => {
      const what = hostKey(hostname) === hostKey(address) ? address : `${hostname} (${address})`;
      return judge(classifyAddress(address) ?? "reserved", what, hostname);
    },
    pinned: (hostname) => pinned.get(hostKey(hostname)),
    hint: options.hint ?? "This request was refused by the address guard.",
  };
}
