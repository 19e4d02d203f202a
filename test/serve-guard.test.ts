/**
 * The mirror never fetches a link-local, metadata or foreign private address, however an allowed
 * upstream leads it there: redirects (each spelling of those addresses, chains), DNS answers
 * (rebinding, through `--resolve`, which feeds the transport's real lookup hook), on the direct
 * node:http stack and through a forward proxy. The `hubcache serve` children run with
 * test/helpers/connect-recorder.mjs, which records every address they would connect to; with root,
 * 169.254.169.254 is also added to lo with a counting server on it. Plus unit tests of the guard.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import dns from "node:dns";
import { existsSync, promises as fs } from "node:fs";
import { isIP } from "node:net";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import {
  type AddressClass,
  classifyAddress,
  classifyHost,
  createAddressGuard,
  embeddedIPv4,
} from "../src/net/address-guard.js";
import { guardedLookup } from "../src/net/node-transport.js";
import { resolve } from "../src/resolve.js";
import { isForbiddenAddress, mirrorAddressGuard, parseResolve, parseUpstream } from "../src/serve/policy.js";
import { savedModelDir, tarGz, tempDir } from "./helpers/fixtures.js";
import { type ForwardProxy, startForwardProxy } from "./helpers/forward-proxy.js";
import { type HubServer, startHubServer } from "./helpers/hub-server.js";
import { type LocalServer, type RequestHandler, startLocalServer } from "./helpers/local-server.js";
import { type Mirror, rawRequest, startMirror } from "./helpers/mirror.js";
import { REPO_ROOT, TEST_TIMEOUT_MS, runCli } from "./helpers/processes.js";

const LIMIT = { timeout: TEST_TIMEOUT_MS };
const RECORDER = path.join(REPO_ROOT, "test", "helpers", "connect-recorder.mjs");
const METADATA_IP = "169.254.169.254";

// ---------------------------------------------------------------------------------------------
// The guard itself: URL or address in, verdict out.

describe("address-guard (pure)", () => {
  test("every spelling of the metadata address is the metadata address", () => {
    for (const url of [
      "http://169.254.169.254/latest/meta-data/",
      "http://2852039166/",
      "http://0xa9fea9fe/",
      "http://0xA9.0xFE.0xA9.0xFE/",
      "http://0251.0376.0251.0376/",
      "http://169.254.43518/",
      "http://169.254.169.254./",
      "http://[::ffff:169.254.169.254]/",
      "http://[::ffff:a9fe:a9fe]/",
      "http://[0:0:0:0:0:ffff:a9fe:a9fe]/",
      "http://[64:ff9b::169.254.169.254]/",
      "http://[::169.254.169.254]/",
      "http://[fd00:ec2::254]/",
      "http://100.100.100.200/",
      "http://168.63.129.16/machine?comp=goalstate",
      "http://metadata.google.internal/computeMetadata/v1/",
      "http://METADATA.google.internal./",
      "http://metadata/",
    ]) {
      assert.equal(classifyHost(new URL(url).hostname), "metadata", url);
    }
  });

  test("address classes", () => {
    const cases: [string, AddressClass][] = [
      ["169.254.1.1", "link-local"],
      ["fe80::1", "link-local"],
      ["[fe80::abcd:1]", "link-local"],
      ["127.0.0.1", "loopback"],
      ["127.255.0.9", "loopback"],
      ["::1", "loopback"],
      ["::ffff:127.0.0.2", "loopback"],
      ["10.1.2.3", "private"],
      ["172.16.0.1", "private"],
      ["172.31.255.255", "private"],
      ["192.168.1.1", "private"],
      ["100.64.0.1", "private"],
      ["fc00::1", "private"],
      ["fd12:3456::1", "private"],
      ["0.0.0.0", "unspecified"],
      ["::", "unspecified"],
      ["224.0.0.1", "reserved"],
      ["255.255.255.255", "reserved"],
      ["ff02::1", "reserved"],
      ["8.8.8.8", "public"],
      ["172.32.0.1", "public"],
      ["2606:4700::1111", "public"],
      ["64:ff9b::808:808", "public"], // NAT64 of 8.8.8.8 (an IPv6-only network's tfhub.dev)
      ["64:ff9b::a9fe:a9fe", "metadata"],
      ["::ffff:0:169.254.169.254", "metadata"], // IPv4-translated (RFC 2765)
      ["64:ff9b:1::a9fe:a9fe", "metadata"], // local-use NAT64, a /96 prefix
      ["64:ff9b:1:a9fe:a9:fe00::", "metadata"], // the same at a /48 prefix
      ["64:ff9b:1:7f:0:100::", "loopback"], // 127.0.0.1 at /56
      ["64:ff9b:1::808:808", "unspecified"], // never public: its /48 reading is 0.0.0.0
      ["64:ff9b:1:808:8:808:808:808", "private"], // 8.8.8.8 at every position: local, so private
      ["2002:a9fe:a9fe::1", "metadata"], // 6to4 through 169.254.169.254
      ["2002:7f00:1::", "loopback"],
      ["2002:c0a8:101:1::5", "private"],
      ["2002:808:808::1", "public"],
      ["2001:0:4136:e378:8000:63bf:5601:5601", "metadata"], // Teredo, client 169.254.169.254 inverted
      ["2001:0:4136:e378:8000:63bf:80ff:fffe", "loopback"], // client 127.0.0.1
      ["2001:db8::1", "public"], // 2001:db8:: is not Teredo (2001:0::/32)
      ["fe80::5efe:169.254.169.254", "metadata"], // ISATAP
      ["2001:db8:1:2:200:5efe:a00:1", "private"], // ISATAP, a global prefix: 10.0.0.1
      ["2001:db8:1:2:0:5efe:808:808", "public"],
      ["fd00::5efe:808:808", "private"], // the prefix's own class is kept: never made public
      ["fe80::200:5efe:808:808", "link-local"],
      ["ff02::5efe:808:808", "reserved"],
      ["64:ff9b:1:a00:0:5efe:808:808", "unspecified"], // local NAT64 stays never public
    ];
    for (const [address, expected] of cases) assert.equal(classifyAddress(address), expected, address);
    assert.equal(classifyAddress("tfhub.dev"), undefined);
    assert.equal(classifyHost("localhost"), "loopback");
    assert.equal(classifyHost("app.localhost."), "loopback");
    assert.equal(classifyHost("tfhub.dev"), "public");
    assert.equal(embeddedIPv4("::ffff:7f00:1"), "127.0.0.1");
    assert.equal(embeddedIPv4("2001:db8::1"), undefined);
    assert.equal(embeddedIPv4("2002:a9fe:a9fe::1"), "169.254.169.254");
    assert.equal(embeddedIPv4("2001:0:4136:e378:8000:63bf:5601:5601"), "169.254.169.254");
    assert.equal(embeddedIPv4("::1"), undefined);
  });

  test("the guard: never link-local or metadata; loopback and private only under internal hosts", () => {
    const guard = createAddressGuard({ internalHosts: ["127.0.0.1", "Hub.Corp"] });
    const allowed = (url: string): boolean => guard.allowTarget(new URL(url)).allowed;
    assert.equal(allowed("https://tfhub.dev/google/x/1"), true);
    assert.equal(allowed("http://127.0.0.1:9000/x"), true, "an internal host, any port");
    assert.equal(allowed("http://127.0.0.2:9000/x"), false, "loopback, not an internal host");
    assert.equal(allowed("http://localhost:9000/x"), false);
    assert.equal(allowed("http://[::1]:9000/x"), false);
    assert.equal(allowed("http://10.0.0.1/x"), false);
    assert.equal(allowed("http://0/x"), false, "0 is 0.0.0.0");
    assert.equal(allowed("http://2852039166/x"), false);
    assert.equal(allowed("http://metadata.google.internal/x"), false);
    assert.equal(allowed("http://hub.corp/x"), true, "a name: its addresses are checked on connect");
    assert.equal(allowed("http://other.corp/x"), true);
    assert.equal(guard.allowAddress("10.0.0.5", "hub.corp.").allowed, true);
    assert.equal(guard.allowAddress("10.0.0.5", "other.corp").allowed, false, "rebinding to private");
    assert.equal(guard.allowAddress(METADATA_IP, "hub.corp").allowed, false, "never, even internal");
    assert.equal(guard.allowAddress("::ffff:169.254.169.254", "hub.corp").allowed, false);
    assert.equal(guard.allowAddress("93.184.215.14", "other.corp").allowed, true);
    const refused = guard.allowAddress(METADATA_IP, "evil.test");
    assert.ok(!refused.allowed && refused.class === "metadata" && refused.reason.includes("evil.test"));
  });

  test("the mirror's guard and flags: internal hosts are the --upstream bases' hosts", () => {
    const guard = mirrorAddressGuard(
      new Map([
        ["tfhub.dev", "http://127.0.0.1:9000"],
        ["intranet.hub", "http://[::1]:9001/base"],
      ]),
    );
    assert.equal(guard.allowTarget(new URL("http://127.0.0.1:1/x")).allowed, true);
    assert.equal(guard.allowTarget(new URL("http://[::1]:2/x")).allowed, true);
    assert.equal(guard.allowTarget(new URL("http://127.0.0.2/x")).allowed, false);
    assert.match(guard.hint, /--upstream/);
    assert.deepEqual(parseResolve("Hub.Test=127.0.0.1,[::1]"), ["hub.test", ["127.0.0.1", "::1"]]);
    assert.match(String(parseResolve("hub.test=nowhere")), /not an IP address/);
    assert.match(String(parseResolve("hub.test")), /HOST=ADDRESS/);
    for (const host of ["0xa9fea9fe", "[::ffff:169.254.169.254]", "metadata.google.internal."]) {
      assert.equal(isForbiddenAddress(host), true, host);
    }
    assert.match(String(parseUpstream("tfhub.dev=http://0xa9fea9fe/")), /link-local/);
    assert.match(String(parseUpstream("0251.0376.0251.0376=http://127.0.0.1:9000")), /link-local/);
  });

  test("guardedLookup checks every address a name has, pinned or not, in both callback forms", async () => {
    const guard = createAddressGuard({
      internalHosts: ["hub.test", "both.test"],
      pinned: new Map([
        ["hub.test", ["127.0.0.1", "::1"]],
        ["both.test", ["127.0.0.1", METADATA_IP]],
        ["evil.test", ["127.0.0.1"]],
      ]),
    });
    const lookup = guardedLookup(guard);
    const ask = (name: string, options: object): Promise<{ error: unknown; address: unknown }> =>
      new Promise((resolve) => {
        lookup(name, options, (error, address) => resolve({ error, address }));
      });
    assert.deepEqual(await ask("hub.test", { all: true }), {
      error: null,
      address: [
        { address: "127.0.0.1", family: 4 },
        { address: "::1", family: 6 },
      ],
    });
    assert.deepEqual(await ask("hub.test", { family: 6 }), { error: null, address: "::1" });
    const both = await ask("both.test", {});
    assert.equal((both.error as { code?: string }).code, "HUBCACHE_ADDRESS_REFUSED", "the second address");
    const evil = await ask("evil.test", { all: true });
    assert.match(String(evil.error), /loopback/);
    const none = await ask("hub.test", { family: 6, all: true });
    assert.deepEqual(none.address, [{ address: "::1", family: 6 }]);
  });
});

// ---------------------------------------------------------------------------------------------
// The real `hubcache serve` child, led by an allowed upstream towards forbidden addresses.

let hub: HubServer;
/** The allowed upstream: answers `/case/<name>/1` with a 302 to `redirects.get(name)`. */
let redirector: LocalServer;
const redirects = new Map<string, string>();
/** Listening where nothing may reach: 127.0.0.2 always, 169.254.169.254 when lo has it. */
let loop2: LocalServer;
let metadata: LocalServer | undefined;
let metaPort = 9; // nothing listens there unless the alias works
let aliasAdded = false;

/** Add 169.254.169.254 to lo (root only), so that a counting server can listen there. */
function aliasMetadataAddress(): string | false {
  if (process.platform !== "linux" || process.getuid?.() !== 0) return "not root on Linux";
  const shown = spawnSync("ip", ["-o", "addr", "show", "dev", "lo"], { encoding: "utf8" });
  if (shown.status !== 0) return `ip addr show failed: ${shown.stderr || shown.error?.message}`;
  if (shown.stdout.includes(`${METADATA_IP}/`)) return false;
  const added = spawnSync("ip", ["addr", "add", `${METADATA_IP}/32`, "dev", "lo"], { encoding: "utf8" });
  if (added.status !== 0) return `ip addr add failed: ${added.stderr || added.error?.message}`;
  aliasAdded = true;
  return false;
}
/** Why there is no counting server on 169.254.169.254 (false: there is one). */
const aliasSkip = aliasMetadataAddress();

/**
 * A local server on a literal address. listen() "looks up" even a literal, which the loopback
 * guard refuses for one outside 127/8: a literal needs no DNS, so that lookup answers itself.
 */
async function listenOnLiteral(address: string, handler: RequestHandler): Promise<LocalServer> {
  const lookup = dns.lookup;
  const literal = (host: string, ...rest: unknown[]): void => {
    const callback = rest.find((arg) => typeof arg === "function") as (...args: unknown[]) => void;
    process.nextTick(callback, null, host, isIP(host));
  };
  Object.assign(dns, { lookup: literal });
  try {
    return await startLocalServer(handler, { host: address });
  } finally {
    Object.assign(dns, { lookup });
  }
}

before(async () => {
  hub = await startHubServer();
  hub.add("/google/saved/1", { archive: await tarGz(await savedModelDir(64 * 1024)) });
  redirector = await startLocalServer((req, res, record) => {
    const name = /^\/case\/([^/]+)\/1$/.exec(record.path)?.[1] ?? "";
    const target = redirects.get(name);
    if (target === undefined) res.writeHead(404).end();
    else res.writeHead(302, { location: target }).end();
  });
  const secret: RequestHandler = (_req, res) => void res.end("secret");
  loop2 = await startLocalServer(secret, { host: "127.0.0.2" });
  if (aliasSkip === false) {
    metadata = await listenOnLiteral(METADATA_IP, secret);
    metaPort = Number(new URL(metadata.origin).port);
  }
});

after(async () => {
  await Promise.all([hub.close(), redirector.close(), loop2.close(), metadata?.close()]);
  if (aliasAdded) spawnSync("ip", ["addr", "del", `${METADATA_IP}/32`, "dev", "lo"]);
});

interface GuardedMirror {
  mirror: Mirror;
  /** Every address the mirror would have connected to so far. */
  connects(): Promise<{ name?: string; address: string; port: number }[]>;
}

async function guardedMirror(args: string[], env: Record<string, string> = {}): Promise<GuardedMirror> {
  const log = path.join(await tempDir("connects-"), "connects.jsonl");
  const mirror = await startMirror(["--cache-dir", await tempDir(), ...args], {
    NODE_OPTIONS: `--import=${RECORDER}`,
    HUBCACHE_TEST_CONNECT_LOG: log,
    HUBCACHE_TEST_LOCAL_ADDRESSES: aliasSkip === false ? METADATA_IP : "",
    HUBCACHE_RETRIES: "1",
    ...env,
  });
  return {
    mirror,
    connects: async () => {
      if (!existsSync(log)) return [];
      const text = await fs.readFile(log, "utf8");
      return text
        .split("\n")
        .filter(Boolean)
        .map((line) => JSON.parse(line) as { name?: string; address: string; port: number });
    },
  };
}

interface Answer {
  status: number;
  code: string | undefined;
  message: string;
}

/** Ask the mirror for `/tfhub.dev/case/<name>/1` as an archive. */
async function ask(mirror: Mirror, name: string, host = "tfhub.dev"): Promise<Answer> {
  const answer = await rawRequest(mirror.origin, `/${host}/case/${name}/1?tf-hub-format=compressed`);
  const text = answer.body.toString("utf8");
  type Body = { error?: { code?: string; message?: string } } | undefined;
  const json = answer.headers["content-type"] === "application/json";
  const error = (json ? (JSON.parse(text) as Body) : undefined)?.error;
  return { status: answer.status, code: error?.code, message: error?.message ?? text.slice(0, 200) };
}

function assertRefused(answer: Answer, name: string, code = "ERR_HUBCACHE_FORBIDDEN"): void {
  assert.equal(answer.status, 502, `${name}: ${answer.message}`);
  assert.equal(answer.code, code, `${name}: ${answer.message}`);
  assert.equal(redirector.requestsTo(`/case/${name}/1`).length, 1, `${name}: asked once, never retried`);
}

function assertNothingReached(): void {
  assert.deepEqual(loop2.requests, [], "nothing reached 127.0.0.2");
  assert.deepEqual(metadata?.requests ?? [], [], "nothing reached 169.254.169.254");
}

/** Every spelling of a forbidden target a redirect may name, and the error it must give. */
function forbiddenTargets(loopPort: number): [string, string, string?][] {
  return [
    ["meta", `http://${METADATA_IP}:${metaPort}/latest/meta-data/`],
    ["meta-decimal", `http://2852039166:${metaPort}/latest/meta-data/`],
    ["meta-hex", `http://0xa9fea9fe:${metaPort}/`],
    ["meta-octal", `http://0251.0376.0251.0376:${metaPort}/`],
    ["meta-mapped", `http://[::ffff:169.254.169.254]:${metaPort}/`],
    ["meta-nat64", `http://[64:ff9b::a9fe:a9fe]:${metaPort}/`],
    ["meta-dot", `http://169.254.169.254.:${metaPort}/`],
    ["ec2-v6", "http://[fd00:ec2::254]/latest/meta-data/"],
    ["gcp", "http://metadata.google.internal/computeMetadata/v1/"],
    ["gcp-dot", "http://METADATA.google.internal./computeMetadata/v1/"],
    ["alibaba", "http://100.100.100.200/latest/meta-data/"],
    ["link-local-v6", "http://[fe80::1]/"],
    // WHATWG URLs have no zone ids: the Location is invalid, refused before anything is sent.
    ["zone-id", "http://[fe80::1%25eth0]/", "ERR_HUBCACHE_HTTP"],
    ["loopback-other", `http://127.0.0.2:${loopPort}/`],
    ["loopback-mapped", `http://[::ffff:127.0.0.2]:${loopPort}/`],
    ["localhost", `http://localhost:${loopPort}/`],
    ["loopback-v6", `http://[::1]:${loopPort}/`],
    ["unspecified", `http://0.0.0.0:${loopPort}/`],
    ["unspecified-0", `http://0:${loopPort}/`],
    ["unspecified-v6", `http://[::]:${loopPort}/`],
    ["private-10", "http://10.0.0.1/"],
    ["private-172", "http://172.16.0.1/"],
    ["private-192", "http://192.168.0.1/"],
    ["private-v6", "http://[fc00::1]/"],
  ];
}

describe("hubcache serve: redirects from an allowed upstream (direct node:http stack)", () => {
  let guarded: GuardedMirror;
  before(async () => {
    guarded = await guardedMirror(["--upstream", `tfhub.dev=${redirector.origin}`]);
  });
  after(() => guarded?.mirror.stop());

  test("allowed → allowed is followed: the model arrives", LIMIT, async () => {
    redirects.set("ok", `${hub.origin}/google/saved/1?tf-hub-format=compressed`);
    const answer = await ask(guarded.mirror, "ok");
    assert.equal(answer.status, 200, answer.message);
  });

  test("each spelling of a metadata, link-local, loopback or private target is refused", LIMIT, async () => {
    const port = Number(new URL(loop2.origin).port);
    for (const [name, target, code] of forbiddenTargets(port)) {
      redirects.set(name, target);
      assertRefused(await ask(guarded.mirror, name), name, code);
    }
    assertNothingReached();
  });

  test("a chain allowed → allowed → metadata is refused at the last hop", LIMIT, async () => {
    redirects.set("chain", "/case/chain-b/1");
    redirects.set("chain-b", `${redirector.origin}/case/chain-c/1`);
    redirects.set("chain-c", `http://0xa9fea9fe:${metaPort}/latest/meta-data/`);
    assertRefused(await ask(guarded.mirror, "chain"), "chain");
    assert.equal(redirector.requestsTo("/case/chain-c/1").length, 1, "every allowed hop was followed");
    assertNothingReached();
  });

  test("the mirror connected to nothing but 127.0.0.1", LIMIT, async () => {
    const connects = await guarded.connects();
    assert.ok(connects.length > 0, "the recorder sees the mirror's connections");
    assert.deepEqual(
      connects.filter((c) => c.address !== "127.0.0.1"),
      [],
    );
  });
});

describe("hubcache serve: DNS answers are checked on the connection (rebinding)", () => {
  let guarded: GuardedMirror;
  before(async () => {
    const redirectorPort = new URL(redirector.origin).port;
    const hubPort = new URL(hub.origin).port;
    guarded = await guardedMirror([
      // Upstream bases by name: these names may reach loopback (never link-local).
      "--upstream",
      `tfhub.dev=http://hub.test:${redirectorPort}`,
      "--upstream",
      `both.example=http://both.test:${hubPort}`,
      "--upstream",
      `meta.example=http://meta.test:${metaPort}`,
      "--resolve",
      "hub.test=127.0.0.1",
      "--resolve",
      `both.test=127.0.0.1,${METADATA_IP}`,
      "--resolve",
      `meta.test=${METADATA_IP}`,
      "--resolve",
      `rebind-meta.test=${METADATA_IP}`,
      "--resolve",
      "rebind-mapped.test=::ffff:169.254.169.254",
      "--resolve",
      "rebind-loop.test=127.0.0.2",
      "--resolve",
      "rebind-private.test=10.0.0.7",
    ]);
  });
  after(() => guarded?.mirror.stop());

  test("a name the operator pinned to loopback as an upstream works", LIMIT, async () => {
    redirects.set(
      "dns-ok",
      `http://hub.test:${new URL(hub.origin).port}/google/saved/1?tf-hub-format=compressed`,
    );
    const answer = await ask(guarded.mirror, "dns-ok");
    assert.equal(answer.status, 200, answer.message);
  });

  test("redirects to names that resolve to forbidden addresses are refused", LIMIT, async () => {
    const loopPort = new URL(loop2.origin).port;
    for (const [name, target] of [
      ["dns-meta", `http://rebind-meta.test:${metaPort}/latest/meta-data/`],
      ["dns-mapped", `http://rebind-mapped.test:${metaPort}/latest/meta-data/`],
      ["dns-loop", `http://rebind-loop.test:${loopPort}/`],
      ["dns-private", "http://rebind-private.test/"],
      // An internal upstream name, first address fine, second one metadata: every address counts.
      ["dns-both", `http://both.test:${new URL(hub.origin).port}/google/saved/1?tf-hub-format=compressed`],
    ]) {
      redirects.set(name ?? "", target ?? "");
      const answer = await ask(guarded.mirror, name ?? "");
      assertRefused(answer, name ?? "");
      assert.match(answer.message, /\.test \(/, "the message names the host and the address");
    }
    assertNothingReached();
  });

  test("an upstream base whose name resolves to the metadata address is refused", LIMIT, async () => {
    const answer = await ask(guarded.mirror, "anything", "meta.example");
    assert.equal(answer.status, 502, answer.message);
    assert.equal(answer.code, "ERR_HUBCACHE_FORBIDDEN", answer.message);
    assertNothingReached();
  });

  test("every address the mirror would connect to is 127.0.0.1", LIMIT, async () => {
    const connects = await guarded.connects();
    assert.ok(
      connects.some((c) => c.name === "hub.test"),
      "the pinned name went through the lookup hook",
    );
    assert.deepEqual(
      connects.filter((c) => c.address !== "127.0.0.1"),
      [],
    );
  });
});

describe("hubcache serve: redirects through a forward proxy (undici stack)", () => {
  let guarded: GuardedMirror;
  let proxy: ForwardProxy;
  before(async () => {
    proxy = await startForwardProxy();
    guarded = await guardedMirror(
      [
        "--upstream",
        `tfhub.dev=${redirector.origin}`,
        // hub.test is an upstream base's name, so it may reach loopback.
        "--upstream",
        `other.example=http://hub.test:${new URL(hub.origin).port}`,
        "--resolve",
        "hub.test=127.0.0.1",
        "--resolve",
        `rebind-meta.test=${METADATA_IP}`,
        "--resolve",
        "rebind-loop.test=127.0.0.2",
      ],
      // Hosts NO_PROXY exempts are connected to directly by undici, through the guard's lookup.
      { HTTP_PROXY: proxy.url, NO_PROXY: "hub.test,rebind-meta.test,rebind-loop.test" },
    );
  });
  after(async () => {
    await guarded?.mirror.stop();
    await proxy?.close();
  });

  test("allowed hops go through the proxy, forbidden ones never reach it", LIMIT, async () => {
    redirects.set("proxy-ok", `${hub.origin}/google/saved/1?tf-hub-format=compressed`);
    const ok = await ask(guarded.mirror, "proxy-ok");
    assert.equal(ok.status, 200, ok.message);
    const port = Number(new URL(loop2.origin).port);
    for (const [name, target, code] of forbiddenTargets(port)) {
      redirects.set(`proxy-${name}`, target);
      assertRefused(await ask(guarded.mirror, `proxy-${name}`), `proxy-${name}`, code);
    }
    redirects.set("proxy-chain", `${redirector.origin}/case/proxy-chain-b/1`);
    redirects.set("proxy-chain-b", `http://2852039166:${metaPort}/`);
    assertRefused(await ask(guarded.mirror, "proxy-chain"), "proxy-chain");
    const hosts = new Set([new URL(redirector.origin).host, new URL(hub.origin).host]);
    const targets = proxy.seen.map((s) => (s.method === "CONNECT" ? s.target : new URL(s.target).host));
    assert.ok(targets.length > 0, "the mirror used the proxy");
    assert.deepEqual(
      targets.filter((t) => !hosts.has(t)),
      [],
      "the proxy was asked for the allowed hosts only",
    );
    assertNothingReached();
  });

  test("hosts NO_PROXY exempts: every address they resolve to is checked too", LIMIT, async () => {
    const hubPort = new URL(hub.origin).port;
    redirects.set("direct-ok", `http://hub.test:${hubPort}/google/saved/1?tf-hub-format=compressed`);
    const ok = await ask(guarded.mirror, "direct-ok");
    assert.equal(ok.status, 200, ok.message);
    redirects.set("direct-meta", `http://rebind-meta.test:${metaPort}/latest/meta-data/`);
    redirects.set("direct-loop", `http://rebind-loop.test:${new URL(loop2.origin).port}/`);
    for (const name of ["direct-meta", "direct-loop"]) {
      const answer = await ask(guarded.mirror, name);
      assertRefused(answer, name);
      assert.match(answer.message, /rebind-\w+\.test \(/, "the message names the host and the address");
    }
    assert.ok(!proxy.seen.some((s) => s.target.includes(".test")), "exempt hosts bypass the proxy");
    assertNothingReached();
  });
});

test("a counting server on 169.254.169.254 (an lo alias) saw no request", { skip: aliasSkip }, () => {
  assert.ok(metadata, "the counting server listened");
  assert.deepEqual(metadata.requests, []);
});

test(
  "the library's own resolve (no mirror) is not guarded: it follows a redirect to localhost",
  LIMIT,
  async () => {
    redirects.set(
      "library",
      `http://localhost:${new URL(hub.origin).port}/google/saved/1?tf-hub-format=compressed`,
    );
    const cacheDir = await tempDir();
    const dir = await resolve(`${redirector.origin}/case/library/1`, { cacheDir });
    assert.ok(existsSync(path.join(dir, "saved_model.pb")), dir);
  },
);

test("serve --resolve with a bad value exits 2", LIMIT, async () => {
  for (const args of [
    ["--resolve", "hub.test"],
    ["--resolve", "hub.test=not-an-ip"],
  ]) {
    const run = await runCli(["serve", ...args]);
    assert.equal(run.code, 2, args.join(" "));
    assert.match(run.stderr, /error\[ERR_HUBCACHE_USAGE\]/);
  }
});
