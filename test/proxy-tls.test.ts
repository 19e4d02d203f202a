// HTTP_PROXY / HTTPS_PROXY / NO_PROXY through a real local proxy (CONNECT tunnels, as undici
// uses them), and TFHUB_DISABLE_CERT_VALIDATION against a real HTTPS host whose self-signed
// certificate is made with openssl at test time.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import http from "node:http";
import net, { type AddressInfo } from "node:net";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { HubcacheEvent } from "../src/events.js";
import { resolve } from "../src/resolve.js";
import { benignEntries, gzip, tarOf } from "./helpers/archives.js";
import { tempDir } from "./helpers/fixtures.js";
import { type FlakyHost, startFlakyHost } from "./helpers/flaky-host.js";
import { assertNoTrace, expectCode, makeSandbox } from "./helpers/sandbox.js";

interface ProxySeen {
  method: string;
  target: string;
  auth: string | undefined;
}

interface TinyProxy {
  url: string;
  seen: ProxySeen[];
  /** Answer CONNECT with this status instead of tunnelling. */
  refuseWith: number | undefined;
  close(): Promise<void>;
}

/** A forward proxy: CONNECT tunnels and absolute-form GETs, recording what it was asked. */
async function startTinyProxy(): Promise<TinyProxy> {
  const seen: ProxySeen[] = [];
  const sockets = new Set<net.Socket>();
  const state: { refuseWith: number | undefined } = { refuseWith: undefined };
  const server = http.createServer((req, res) => {
    seen.push({
      method: req.method ?? "GET",
      target: req.url ?? "",
      auth: req.headers["proxy-authorization"],
    });
    const upstream = http.request(req.url ?? "", { method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on("error", () => res.destroy());
    req.pipe(upstream);
  });
  server.on("connect", (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
    seen.push({ method: "CONNECT", target: req.url ?? "", auth: req.headers["proxy-authorization"] });
    sockets.add(client);
    if (state.refuseWith !== undefined) {
      client.end(`HTTP/1.1 ${state.refuseWith} Refused\r\nContent-Length: 0\r\n\r\n`);
      return;
    }
    const [hostname, port] = (req.url ?? "").split(":");
    const upstream = net.connect(Number(port), hostname ?? "127.0.0.1", () => {
      client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    sockets.add(upstream);
    upstream.on("error", () => client.destroy());
    client.on("error", () => upstream.destroy());
  });
  server.on("connection", (socket: net.Socket) => sockets.add(socket));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    get refuseWith() {
      return state.refuseWith;
    },
    set refuseWith(value: number | undefined) {
      state.refuseWith = value;
    },
    close: () =>
      new Promise<void>((r) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => r());
      }),
  };
}

const ARCHIVE = gzip(tarOf(benignEntries()));
let plain: FlakyHost;
let proxy: TinyProxy;
before(async () => {
  plain = await startFlakyHost();
  plain.route("/model", [{ body: ARCHIVE }]);
  proxy = await startTinyProxy();
});
after(async () => {
  await plain.close();
  await proxy.close();
});

async function inSandbox(work: (cacheDir: string) => Promise<void>): Promise<void> {
  const sandbox = await makeSandbox();
  try {
    await work(sandbox.cacheDir);
  } finally {
    await sandbox.cleanup();
  }
}

describe("proxies", () => {
  it("HTTP_PROXY carries the download through the proxy", async () => {
    proxy.seen.length = 0;
    await inSandbox(async (cacheDir) => {
      await resolve(plain.url("/model"), { cacheDir, env: { HTTP_PROXY: proxy.url } });
    });
    const { port } = new URL(plain.origin);
    assert.deepEqual(
      proxy.seen.map((s) => `${s.method} ${s.target}`),
      [`CONNECT 127.0.0.1:${port}`],
    );
  });

  it("through a proxy (the fetch transport), a reset mid-body is resumed with Range + If-Range too", async () => {
    const big = gzip(tarOf([...benignEntries(), { path: "./big.bin", content: randomBytes(800_000) }]));
    plain.route("/resumable", [
      { body: big, ranges: true, cutAfter: 300_000 },
      { body: big, ranges: true },
    ]);
    await inSandbox(async (cacheDir) => {
      const dir = await resolve(plain.url("/resumable"), {
        cacheDir,
        retryDelayMs: 5,
        env: { HTTP_PROXY: proxy.url },
      });
      assert.equal((await fs.stat(path.join(dir, "big.bin"))).size, 800_000);
    });
    const [, second] = plain.requestsTo("/resumable");
    assert.match(String(second?.headers.range), /^bytes=[1-9]\d*-$/);
    assert.equal(second?.headers["if-range"], '"v1"');
  });

  it("lower-case http_proxy works too", async () => {
    proxy.seen.length = 0;
    await inSandbox(async (cacheDir) => {
      await resolve(plain.url("/model"), { cacheDir, env: { http_proxy: proxy.url } });
    });
    assert.equal(proxy.seen.length, 1);
  });

  it("NO_PROXY exempts a host (exact name, and with its port)", async () => {
    proxy.seen.length = 0;
    const { port } = new URL(plain.origin);
    for (const noProxy of ["127.0.0.1", `localhost,127.0.0.1:${port}`, "*"]) {
      await inSandbox(async (cacheDir) => {
        await resolve(plain.url("/model"), { cacheDir, env: { HTTP_PROXY: proxy.url, NO_PROXY: noProxy } });
      });
    }
    assert.deepEqual(proxy.seen, []);
  });

  it("NO_PROXY for another host does not exempt this one", async () => {
    proxy.seen.length = 0;
    await inSandbox(async (cacheDir) => {
      await resolve(plain.url("/model"), {
        cacheDir,
        env: { HTTP_PROXY: proxy.url, NO_PROXY: "example.com,10.0.0.1" },
      });
    });
    assert.equal(proxy.seen.length, 1);
  });

  it("proxy credentials are sent to the proxy and never shown, even when it refuses", async () => {
    proxy.seen.length = 0;
    const withAuth = proxy.url.replace("http://", "http://alice:s3cret-pw@");
    await inSandbox(async (cacheDir) => {
      await resolve(plain.url("/model"), { cacheDir, env: { HTTP_PROXY: withAuth } });
    });
    assert.equal(proxy.seen[0]?.auth, `Basic ${Buffer.from("alice:s3cret-pw").toString("base64")}`);

    proxy.refuseWith = 403;
    try {
      const sandbox = await makeSandbox();
      const events: HubcacheEvent[] = [];
      try {
        const error = await expectCode(
          resolve(plain.url("/model"), {
            cacheDir: sandbox.cacheDir,
            retries: 0,
            env: { HTTP_PROXY: withAuth },
            onEvent: (e) => events.push(e),
          }),
          "ERR_HUBCACHE_NETWORK",
        );
        const shown = JSON.stringify([error.toJSON(), error.message, error.hint, events]);
        assert.doesNotMatch(shown, /s3cret-pw/);
        assert.match(error.hint ?? "", /HTTP_PROXY/);
        await assertNoTrace(sandbox);
      } finally {
        await sandbox.cleanup();
      }
    } finally {
      proxy.refuseWith = undefined;
    }
  });
});

describe("TLS certificates", () => {
  let secure: FlakyHost | undefined;
  let skipReason: string | undefined;
  before(async () => {
    const dir = await tempDir("hubcache-cert-");
    try {
      execFileSync(
        "openssl",
        [
          "req",
          "-x509",
          "-newkey",
          "rsa:2048",
          "-nodes",
          "-days",
          "1",
          "-subj",
          "/CN=127.0.0.1",
          "-addext",
          "subjectAltName=IP:127.0.0.1",
          "-keyout",
          path.join(dir, "key.pem"),
          "-out",
          path.join(dir, "cert.pem"),
        ],
        { stdio: "pipe" },
      );
      secure = await startFlakyHost({
        key: await fs.readFile(path.join(dir, "key.pem"), "utf8"),
        cert: await fs.readFile(path.join(dir, "cert.pem"), "utf8"),
      });
      secure.route("/model", [{ body: ARCHIVE }]);
    } catch (error) {
      skipReason = `openssl could not make a certificate: ${String(error).split("\n")[0]}`;
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
  after(() => secure?.close());

  it("a self-signed certificate is refused by default, with a hint and no retries", async (t) => {
    if (!secure) return t.skip(skipReason);
    const sandbox = await makeSandbox();
    const events: HubcacheEvent[] = [];
    try {
      const error = await expectCode(
        resolve(secure.url("/model"), {
          cacheDir: sandbox.cacheDir,
          env: {},
          onEvent: (e) => events.push(e),
        }),
        "ERR_HUBCACHE_NETWORK",
      );
      assert.match(error.message, /certificate/);
      assert.match(error.hint ?? "", /NODE_EXTRA_CA_CERTS|TFHUB_DISABLE_CERT_VALIDATION/);
      assert.equal(events.filter((e) => e.type === "retry").length, 0);
      assert.equal(secure.requestsTo("/model").length, 0);
      await assertNoTrace(sandbox);
    } finally {
      await sandbox.cleanup();
    }
  });

  it("TFHUB_DISABLE_CERT_VALIDATION=true accepts it, with a warning event", async (t) => {
    if (!secure) return t.skip(skipReason);
    const events: HubcacheEvent[] = [];
    await inSandbox(async (cacheDir) => {
      await resolve(secure!.url("/model"), {
        cacheDir,
        env: { TFHUB_DISABLE_CERT_VALIDATION: "true" },
        onEvent: (e) => events.push(e),
      });
    });
    const warnings = events.filter((e) => e.type === "warning");
    assert.equal(warnings.length, 1);
    assert.match(JSON.stringify(warnings[0]), /TFHUB_DISABLE_CERT_VALIDATION/);
  });

  it('only the exact string "true" disables validation, as in TF Hub', async (t) => {
    if (!secure) return t.skip(skipReason);
    for (const value of ["1", "True", "yes"]) {
      await inSandbox(async (cacheDir) => {
        await expectCode(
          resolve(secure!.url("/model"), { cacheDir, env: { TFHUB_DISABLE_CERT_VALIDATION: value } }),
          "ERR_HUBCACHE_NETWORK",
        );
      });
    }
  });

  it("HTTPS through an HTTPS_PROXY tunnel honours TFHUB_DISABLE_CERT_VALIDATION too", async (t) => {
    if (!secure) return t.skip(skipReason);
    proxy.seen.length = 0;
    await inSandbox(async (cacheDir) => {
      await resolve(secure!.url("/model"), {
        cacheDir,
        env: { HTTPS_PROXY: proxy.url, TFHUB_DISABLE_CERT_VALIDATION: "true" },
      });
    });
    assert.equal(proxy.seen[0]?.method, "CONNECT");
  });
});
