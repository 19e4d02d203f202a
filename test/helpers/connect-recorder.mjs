// Preloaded (NODE_OPTIONS --import) into the `hubcache serve` children of test/serve-guard.test.ts
// in place of the loopback guard, which refuses every connection by host name before its lookup
// runs and so would hide what the mirror's own lookup hook decides. Like that guard it keeps the
// process on this machine: connections may only reach 127/8, ::1 and the addresses listed in
// HUBCACHE_TEST_LOCAL_ADDRESSES (aliases on lo); real DNS only answers localhost names.
// And it records every address the process would connect to, one JSON line each in
// HUBCACHE_TEST_CONNECT_LOG: a literal host, or each address a connection's lookup returned
// (the mirror's guarded lookup, or dns.lookup), before anything is connected.
import { appendFileSync } from "node:fs";
import dns from "node:dns";
import net from "node:net";

const LOG = process.env.HUBCACHE_TEST_CONNECT_LOG;
const EXTRA = new Set((process.env.HUBCACHE_TEST_LOCAL_ADDRESSES ?? "").split(",").filter(Boolean));
const LOOPBACK_NAMES = new Set(["localhost", "localhost.localdomain", "ip6-localhost"]);

function isLocal(address) {
  if (EXTRA.has(address)) return true;
  if (net.isIPv4(address)) return address.startsWith("127.");
  return address === "::1" || address.startsWith("::ffff:127.");
}

function record(entry) {
  if (LOG) appendFileSync(LOG, `${JSON.stringify(entry)}\n`);
}

function refusal(what) {
  return Object.assign(new Error(`test guard: connections to ${what} are not allowed (this machine only)`), {
    code: "ECONNREFUSED",
    syscall: "connect",
  });
}

const originalLookup = dns.lookup;
dns.lookup = function localLookup(hostname, ...rest) {
  const name = String(hostname).toLowerCase();
  if (!LOOPBACK_NAMES.has(name) && !(net.isIP(name) && isLocal(name))) {
    const callback = rest.find((arg) => typeof arg === "function");
    const error = Object.assign(new Error(`test guard: DNS lookup of ${hostname} is not allowed`), {
      code: "ENOTFOUND",
      hostname,
    });
    if (callback) process.nextTick(() => callback(error));
    return undefined;
  }
  return originalLookup.call(this, hostname, ...rest);
};

/** The connection's lookup, recording (and confining to this machine) what it returns. */
function recordedLookup(lookup, port) {
  return (hostname, options, callback) =>
    lookup(hostname, options, (error, address, family) => {
      if (error) return callback(error, address, family);
      const addresses = Array.isArray(address) ? address.map((entry) => entry.address) : [address];
      for (const each of addresses) record({ name: hostname, address: each, port });
      const far = addresses.find((each) => !isLocal(each));
      if (far !== undefined) return callback(refusal(`${hostname} (${far})`));
      return callback(null, address, family);
    });
}

const originalConnect = net.Socket.prototype.connect;
net.Socket.prototype.connect = function recordedConnect(...args) {
  const first = args[0];
  const options = Array.isArray(first) ? first[0] : first;
  // Unix sockets, and the rare (port, host) forms, which hubcache's transports never use.
  if (typeof options !== "object" || options === null) return originalConnect.apply(this, args);
  if (typeof options.path === "string" && options.path !== "") return originalConnect.apply(this, args);
  const host = String(options.host ?? options.hostname ?? "localhost").replace(/^\[|\]$/g, "");
  if (net.isIP(host)) {
    record({ address: host, port: options.port });
    if (!isLocal(host)) {
      process.nextTick(() => this.destroy(refusal(host)));
      return this;
    }
    return originalConnect.apply(this, args);
  }
  options.lookup = recordedLookup(options.lookup ?? dns.lookup, options.port);
  return originalConnect.apply(this, args);
};
