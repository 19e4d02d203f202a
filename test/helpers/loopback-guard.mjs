// Preloaded into every test process (and, through NODE_OPTIONS, every Node child it starts):
// connections and DNS lookups may only go to this machine. Tests speak real protocols to local
// servers; anything that tries to reach another address fails at once instead of leaving the box.
import dns from "node:dns";
import net from "node:net";

const LOOPBACK_NAMES = new Set(["localhost", "localhost.localdomain", "ip6-localhost"]);

function isLoopback(host) {
  if (host === undefined || host === null || host === "") return true; // Node's default is localhost
  const name = String(host)
    .replace(/^\[|\]$/g, "")
    .toLowerCase();
  if (LOOPBACK_NAMES.has(name) || name.endsWith(".localhost")) return true;
  if (net.isIPv4(name)) return name.startsWith("127.");
  if (net.isIPv6(name)) return name === "::1" || name.startsWith("::ffff:127.");
  return false;
}

function refusal(host) {
  return Object.assign(new Error(`test guard: connections to ${host} are not allowed (loopback only)`), {
    code: "ECONNREFUSED",
    syscall: "connect",
  });
}

const originalConnect = net.Socket.prototype.connect;
net.Socket.prototype.connect = function guardedConnect(...args) {
  const first = args[0];
  const options = Array.isArray(first) ? first[0] : first;
  let host;
  if (typeof options === "object" && options !== null) {
    // A unix socket, exactly as net decides it (http passes `path: null`).
    if (typeof options.path === "string" && options.path !== "") return originalConnect.apply(this, args);
    host = options.host ?? options.hostname;
  } else if (typeof options === "number" || /^\d+$/.test(String(options))) {
    host = typeof args[1] === "string" ? args[1] : undefined;
  } else {
    return originalConnect.apply(this, args); // a path
  }
  if (!isLoopback(host)) {
    process.nextTick(() => this.destroy(refusal(host)));
    return this;
  }
  return originalConnect.apply(this, args);
};

function guardLookup(original) {
  return function guardedLookup(hostname, ...rest) {
    if (!isLoopback(hostname)) {
      const callback = rest.find((arg) => typeof arg === "function");
      const error = Object.assign(new Error(`test guard: DNS lookup of ${hostname} is not allowed`), {
        code: "ENOTFOUND",
        hostname,
      });
      if (callback) process.nextTick(() => callback(error));
      return undefined;
    }
    return original.call(this, hostname, ...rest);
  };
}
dns.lookup = guardLookup(dns.lookup);
const originalPromiseLookup = dns.promises.lookup;
dns.promises.lookup = async (hostname, ...rest) => {
  if (!isLoopback(hostname)) {
    throw Object.assign(new Error(`test guard: DNS lookup of ${hostname} is not allowed`), {
      code: "ENOTFOUND",
      hostname,
    });
  }
  return originalPromiseLookup(hostname, ...rest);
};
