// HTTP_PROXY / HTTPS_PROXY / NO_PROXY through a real local proxy (CONNECT tunnels, as undici
// uses them; see helpers/forward-proxy.ts), and TFHUB_DISABLE_CERT_VALIDATION against a real HTTPS host whose self-signed
// certificate is made with openssl at test time.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { HubcacheEvent } from "../src/events.js";
import { resolve } from "../src/resolve.js";
import { benignEntries, gzip, tarOf } from "./helpers/archives.js";
import { readTree, tempDir } from "./helpers/fixtures.js";
import { type FlakyHost, startFlakyHost } from "./helpers/flaky-host.js";
import { type ForwardProxy, startForwardProxy } from "./helpers/forward-proxy.js";
import { assertNoTrace, expectCode, makeSandbox } from "./helpers/sandbox.js";

const ARCHIVE = gzip(tarOf(benignEntries()));
let plain: FlakyHost;
let proxy: ForwardProxy;
before(async () => {
  plain = await startFlakyHost();
  plain.route("/model", [{ body: ARCHIVE }]);
  proxy = await startForwardProxy();
});
after(async () => {
  await plain.close();
  await proxy.close();
});

/** The model's files and bytes, as resolve must leave them. */
async function assertModel(dir: string): Promise<void> {
  const expected = new Map<string, Buffer>();
  for (const entry of benignEntries()) {
    if (entry.content !== undefined) {
      expected.set(entry.path.replace(/^\.\//, ""), Buffer.from(entry.content));
    }
  }
  assert.deepEqual(await readTree(dir), expected);
}

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
      await assertModel(await resolve(plain.url("/model"), { cacheDir, env: { HTTP_PROXY: proxy.url } }));
    });
    const { port } = new URL(plain.origin);
    assert.deepEqual(
      proxy.seen.map((s) => `${s.method} ${s.target}`),
      [`CONNECT 127.0.0.1:${port}`],
    );
  });

  it("through a proxy (the fetch transport), a reset mid-body is resumed with Range + If-Range too", async () => {
    const bigBin = randomBytes(800_000);
    const big = gzip(tarOf([...benignEntries(), { path: "./big.bin", content: bigBin }]));
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
      assert.ok((await fs.readFile(path.join(dir, "big.bin"))).equals(bigBin), "big.bin's bytes differ");
    });
    const [, second] = plain.requestsTo("/resumable");
    assert.match(String(second?.headers.range), /^bytes=[1-9]\d*-$/);
    assert.equal(second?.headers["if-range"], '"v1"');
  });

  it("lower-case http_proxy works too", async () => {
    proxy.seen.length = 0;
    await inSandbox(async (cacheDir) => {
      await assertModel(await resolve(plain.url("/model"), { cacheDir, env: { http_proxy: proxy.url } }));
    });
    assert.equal(proxy.seen.length, 1);
    assert.equal(
      `${proxy.seen[0]?.method} ${proxy.seen[0]?.target}`,
      `CONNECT 127.0.0.1:${new URL(plain.origin).port}`,
    );
  });

  it("NO_PROXY exempts a host (exact name, and with its port)", async () => {
    proxy.seen.length = 0;
    const { port } = new URL(plain.origin);
    const direct = plain.requestsTo("/model").length;
    for (const noProxy of ["127.0.0.1", `localhost,127.0.0.1:${port}`, "*"]) {
      await inSandbox(async (cacheDir) => {
        await resolve(plain.url("/model"), { cacheDir, env: { HTTP_PROXY: proxy.url, NO_PROXY: noProxy } });
      });
    }
    assert.deepEqual(proxy.seen, []);
    // Each of the three went straight to the host instead.
    assert.equal(plain.requestsTo("/model").length - direct, 3);
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

  for (const via of ["direct", "proxied"] as const) {
    it(`${via}: a self-signed certificate is refused by default, with a hint and no retries`, async (t) => {
      if (!secure) return t.skip(skipReason);
      const sandbox = await makeSandbox();
      const events: HubcacheEvent[] = [];
      try {
        const error = await expectCode(
          resolve(secure.url("/model"), {
            cacheDir: sandbox.cacheDir,
            env: via === "proxied" ? { HTTPS_PROXY: proxy.url } : {},
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
  }

  it("TFHUB_DISABLE_CERT_VALIDATION=true accepts it, with a warning event", async (t) => {
    if (!secure) return t.skip(skipReason);
    const events: HubcacheEvent[] = [];
    await inSandbox(async (cacheDir) => {
      const dir = await resolve(secure!.url("/model"), {
        cacheDir,
        env: { TFHUB_DISABLE_CERT_VALIDATION: "true" },
        onEvent: (e) => events.push(e),
      });
      await assertModel(dir);
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
      const dir = await resolve(secure!.url("/model"), {
        cacheDir,
        env: { HTTPS_PROXY: proxy.url, TFHUB_DISABLE_CERT_VALIDATION: "true" },
      });
      await assertModel(dir);
    });
    assert.equal(proxy.seen[0]?.method, "CONNECT");
    assert.deepEqual(
      proxy.seen.map((seen) => `${seen.method} ${seen.target}`),
      [`CONNECT 127.0.0.1:${new URL(secure.origin).port}`],
    );
  });
});
