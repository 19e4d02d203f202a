/**
 * `hubcache serve` as a real child process in front of the stand-in hub (tfhub.dev mapped to it
 * with --upstream): single flight across hubcache clients and plain HTTP clients, the hosting
 * protocol's forms, Range/ETag/304, refusals, traversal, the token, dropped clients, load, SIGTERM.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, promises as fs } from "node:fs";
import http from "node:http";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { after, before, describe, test } from "node:test";
import * as tar from "tar";
import { movenetModelDir, readTree, savedModelDir, tarGz, tempDir } from "./helpers/fixtures.js";
import { type HubServer, startHubServer } from "./helpers/hub-server.js";
import { type Mirror, rawRequest, startMirror } from "./helpers/mirror.js";
import { TEST_TIMEOUT_MS, leftovers, runCli, waitUntil } from "./helpers/processes.js";

const LIMIT = { timeout: TEST_TIMEOUT_MS };
const sha1 = (text: string): string => createHash("sha1").update(text).digest("hex");

let hub: HubServer;
let savedDir: string;
let movenetDir: string;

before(async () => {
  hub = await startHubServer();
  savedDir = await savedModelDir(512 * 1024);
  movenetDir = await movenetModelDir();
  hub.add("/google/saved/1", { archive: await tarGz(savedDir), dir: savedDir });
  hub.add("/google/movenet/1", { archive: await tarGz(movenetDir), dir: movenetDir });
  hub.add("/google/movenet", { archive: await tarGz(movenetDir), dir: movenetDir });
  hub.add("/google/broken/1", { archive: Buffer.from("<html>not an archive</html>") });
});
after(() => hub.close());

async function mirrorFor(
  cacheDir: string,
  extra: string[] = [],
  env: Record<string, string> = {},
): Promise<Mirror> {
  return startMirror(["--cache-dir", cacheDir, "--upstream", `tfhub.dev=${hub.origin}`, ...extra], env);
}

function compressedRequests(modelPath: string): number {
  return hub.requests.filter((r) => r.url.startsWith(`${modelPath}?`) && r.url.includes("compressed")).length;
}

/** Extract a tar (plain or gzip'd) into a fresh dir and read it back. */
async function untar(body: Buffer): Promise<Map<string, Buffer>> {
  const dir = await tempDir("untar-");
  const archive = path.join(dir, "..", `${path.basename(dir)}.tar`);
  await fs.writeFile(archive, body);
  await tar.x({ file: archive, cwd: dir });
  return readTree(dir);
}

function assertSameTree(actual: Map<string, Buffer>, expected: Map<string, Buffer>, what: string): void {
  assert.deepEqual([...actual.keys()].sort(), [...expected.keys()].sort(), what);
  for (const [name, bytes] of expected) assert.ok(actual.get(name)?.equals(bytes), `${what}: ${name}`);
}

describe("hubcache serve", () => {
  test(
    "N concurrent clients (hubcache resolve + plain HTTP) cause one upstream download",
    LIMIT,
    async () => {
      const mirror = await mirrorFor(await tempDir());
      try {
        const handle = "https://tfhub.dev/google/saved/1";
        const release = hub.holdDownloads();
        const clientCaches = await Promise.all([1, 2, 3, 4].map(() => tempDir("client-")));
        const clients = clientCaches.map((cacheDir) =>
          runCli(["resolve", "--cache-dir", cacheDir, handle], { env: { HUBCACHE_MIRROR: mirror.origin } }),
        );
        const plain = [1, 2, 3, 4].map(() =>
          fetch(`${mirror.origin}/tfhub.dev/google/saved/1?tf-hub-format=compressed`).then(async (r) => ({
            status: r.status,
            encoding: r.headers.get("content-encoding"),
            body: Buffer.from(await r.arrayBuffer()),
          })),
        );
        await waitUntil(() => hub.downloads().length > 0, "the mirror's upstream request");
        await sleep(2500); // let every client process start and reach the mirror while upstream is held
        release();
        const expected = await readTree(savedDir);
        for (const [i, result] of (await Promise.all(clients)).entries()) {
          assert.equal(result.code, 0, result.stderr);
          const dir = result.stdout.trim();
          // The client's cache key is the canonical handle's, not the mirror URL's.
          assert.equal(dir, path.join(clientCaches[i] ?? "", sha1(handle)));
          assertSameTree(await readTree(dir), expected, `client ${i}`);
        }
        for (const response of await Promise.all(plain)) {
          assert.equal(response.status, 200);
          assert.equal(response.encoding, "gzip"); // fetch asked for it, and undici undid it
          assertSameTree(await untar(response.body), expected, "plain HTTP client");
        }
        assert.equal(hub.downloads().length, 1, "exactly one download of the archive");
        assert.equal(compressedRequests("/google/saved/1"), 1, "exactly one request to the hub");
      } finally {
        await mirror.stop();
      }
    },
  );

  test(
    "files: ETag, 304, Range 206 and 416, HEAD, immutable for versioned handles, CORS",
    LIMIT,
    async () => {
      const mirror = await mirrorFor(await tempDir());
      try {
        const base = `${mirror.origin}/tfhub.dev/google/movenet/1`;
        const weights = await fs.readFile(path.join(movenetDir, "group1-shard1of1.bin"));
        const full = await fetch(`${base}/group1-shard1of1.bin?tfjs-format=file`, {
          headers: { origin: "http://app.example" },
        });
        assert.equal(full.status, 200);
        assert.ok(Buffer.from(await full.arrayBuffer()).equals(weights));
        assert.equal(full.headers.get("content-length"), String(weights.length));
        assert.equal(full.headers.get("accept-ranges"), "bytes");
        assert.match(full.headers.get("cache-control") ?? "", /immutable/);
        assert.equal(full.headers.get("access-control-allow-origin"), "*");
        const etag = full.headers.get("etag") ?? "";
        assert.match(etag, /^"[0-9a-f]+-[0-9a-f]+-[0-9a-f]+"$/);

        const notModified = await fetch(`${base}/group1-shard1of1.bin?tfjs-format=file`, {
          headers: { "if-none-match": etag },
        });
        assert.equal(notModified.status, 304);

        const part = await fetch(`${base}/group1-shard1of1.bin?tfjs-format=file`, {
          headers: { range: "bytes=10-29" },
        });
        assert.equal(part.status, 206);
        assert.equal(part.headers.get("content-range"), `bytes 10-29/${weights.length}`);
        assert.ok(Buffer.from(await part.arrayBuffer()).equals(weights.subarray(10, 30)));
        const suffix = await fetch(`${base}/group1-shard1of1.bin?tfjs-format=file`, {
          headers: { range: "bytes=-5" },
        });
        assert.ok(Buffer.from(await suffix.arrayBuffer()).equals(weights.subarray(weights.length - 5)));
        const stale = await fetch(`${base}/group1-shard1of1.bin?tfjs-format=file`, {
          headers: { range: "bytes=0-0", "if-range": '"other"' },
        });
        assert.equal(stale.status, 200, "If-Range with another validator: the whole file");
        await stale.arrayBuffer();

        const beyond = await fetch(`${base}/group1-shard1of1.bin?tfjs-format=file`, {
          headers: { range: `bytes=${weights.length}-` },
        });
        assert.equal(beyond.status, 416);
        assert.equal(beyond.headers.get("content-range"), `bytes */${weights.length}`);

        const head = await fetch(`${base}/model.json?tfjs-format=file`, { method: "HEAD" });
        assert.equal(head.status, 200);
        assert.equal(head.headers.get("content-type"), "application/json");
        assert.equal(
          head.headers.get("content-length"),
          String((await fs.stat(path.join(movenetDir, "model.json"))).size),
        );

        const preflight = await fetch(`${base}/model.json?tfjs-format=file`, {
          method: "OPTIONS",
          headers: { origin: "http://app.example", "access-control-request-method": "GET" },
        });
        assert.equal(preflight.status, 204);
        assert.match(preflight.headers.get("access-control-allow-methods") ?? "", /GET/);

        const unversioned = await fetch(
          `${mirror.origin}/tfhub.dev/google/movenet/model.json?tfjs-format=file`,
        );
        assert.equal(unversioned.status, 200);
        assert.equal(unversioned.headers.get("cache-control"), "public, no-cache");
        await unversioned.arrayBuffer();

        const missing = await fetch(`${base}/nothing.bin?tfjs-format=file`);
        assert.equal(missing.status, 404);
        assert.equal(hub.requests.filter((r) => r.url.startsWith("/google/movenet/1?")).length, 1);
      } finally {
        await mirror.stop();
      }
    },
  );

  test(
    "ETags come from the record: the same across a restart and a copy of the cache; Python's keep size+mtime",
    LIMIT,
    async () => {
      const cacheDir = await tempDir();
      const file = "/tfhub.dev/google/movenet/1/group1-shard1of1.bin?tfjs-format=file";
      const archive = "/tfhub.dev/google/movenet/1?tf-hub-format=compressed";
      const etagOf = async (origin: string, target: string): Promise<string> => {
        const response = await rawRequest(origin, target, { method: "HEAD" });
        assert.equal(response.status, 200, target);
        return String(response.headers.etag);
      };
      let mirror = await mirrorFor(cacheDir);
      try {
        const first = await etagOf(mirror.origin, file);
        const firstTar = await etagOf(mirror.origin, archive);
        assert.match(firstTar, /^"tar-[0-9a-f]{32}"$/);
        await mirror.stop();
        // A copy of the cache (another machine, a CI restore): new inodes, new modification times.
        const copy = await tempDir("copied-cache-");
        await fs.cp(cacheDir, copy, { recursive: true });
        const hash = sha1("https://tfhub.dev/google/movenet/1");
        const copied = path.join(copy, hash, "group1-shard1of1.bin");
        await fs.utimes(copied, new Date("2021-05-04T03:02:01Z"), new Date("2021-05-04T03:02:01Z"));
        mirror = await mirrorFor(copy);
        assert.equal(await etagOf(mirror.origin, file), first, "the same file, the same ETag");
        assert.equal(await etagOf(mirror.origin, archive), firstTar, "the same archive, the same ETag");
        const cached = await rawRequest(mirror.origin, file, { headers: { "if-none-match": first } });
        assert.equal(cached.status, 304);

        // An entry Python wrote (no record): size and mtime, new when the file is rewritten.
        const python = "https://tfhub.dev/google/python-only/1";
        await fs.mkdir(path.join(copy, sha1(python)));
        const pb = path.join(copy, sha1(python), "saved_model.pb");
        await fs.writeFile(pb, "python's saved model");
        await fs.writeFile(path.join(copy, `${sha1(python)}.descriptor.txt`), `Module: ${python}\n`);
        const target = `/_files/${sha1(python)}/saved_model.pb`;
        const before = await etagOf(mirror.origin, target);
        assert.match(before, /^"[0-9a-f]+-14-[0-9a-f]+"$/);
        await fs.writeFile(pb, "PYTHON'S SAVED MODEL");
        await fs.utimes(pb, new Date("2022-01-01T00:00:00Z"), new Date("2022-01-01T00:00:00Z"));
        assert.notEqual(await etagOf(mirror.origin, target), before);
        assert.equal(
          (await rawRequest(mirror.origin, target, { headers: { "if-none-match": before } })).status,
          200,
        );
        const pyArchive = await rawRequest(
          mirror.origin,
          `/tfhub.dev/google/python-only/1?tf-hub-format=compressed`,
        );
        assert.equal(pyArchive.status, 200);
        assert.equal(pyArchive.headers.etag, undefined, "no archive ETag without a record");
      } finally {
        await mirror.stop();
      }
    },
  );

  test("UNCOMPRESSED through the mirror: 303 to a location whose files the client reads", LIMIT, async () => {
    const mirror = await mirrorFor(await tempDir());
    try {
      const handle = "https://tfhub.dev/google/saved/1";
      const answer = await fetch(`${mirror.origin}/tfhub.dev/google/saved/1?tf-hub-format=uncompressed`, {
        redirect: "manual",
      });
      assert.equal(answer.status, 303);
      const location = (await answer.text()).trim();
      assert.equal(location, `${mirror.origin}/_files/${sha1(handle)}`);
      assert.equal(answer.headers.get("location"), location);
      const index = await fetch(`${location}/variables/variables.index`);
      assert.ok(
        Buffer.from(await index.arrayBuffer()).equals(
          await fs.readFile(path.join(savedDir, "variables", "variables.index")),
        ),
      );

      // A hubcache client in UNCOMPRESSED mode gets that location (and checks it exists there).
      const result = await runCli(["resolve", "--load-format", "UNCOMPRESSED", handle], {
        env: { HUBCACHE_MIRROR: mirror.origin },
      });
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout.trim(), location);
      assert.equal(
        hub.downloads().filter((r) => r.url.startsWith("/storage/google/saved/1")).length >= 1,
        true,
      );
    } finally {
      await mirror.stop();
    }
  });

  test(
    "hosts outside the allow-list and metadata addresses are refused before any request",
    LIMIT,
    async () => {
      const mirror = await mirrorFor(await tempDir());
      try {
        const before = hub.requests.length;
        for (const target of [
          "/example.com/google/saved/1?tf-hub-format=compressed",
          "/169.254.169.254/latest/meta-data?tf-hub-format=compressed",
          "/metadata.google.internal/computeMetadata/v1/x/model.json?tfjs-format=file",
          `/${new URL(hub.origin).host}/google/saved/1?tf-hub-format=compressed`,
        ]) {
          const response = await rawRequest(mirror.origin, target);
          assert.equal(response.status, 403, target);
          assert.match(response.body.toString(), /ERR_HUBCACHE_FORBIDDEN/);
        }
        assert.equal(hub.requests.length, before, "no request reached any host");
        const refused = await runCli([
          "serve",
          "--port",
          "0",
          "--upstream",
          "metadata=http://169.254.169.254",
        ]);
        assert.equal(refused.code, 2);
        assert.match(refused.stderr, /link-local and cloud metadata/);
      } finally {
        await mirror.stop();
      }
    },
  );

  test("traversal attempts never leave the entry folder", LIMIT, async () => {
    const cacheDir = await tempDir();
    const mirror = await mirrorFor(cacheDir);
    try {
      const warm = await fetch(`${mirror.origin}/tfhub.dev/google/movenet/1/model.json?tfjs-format=file`);
      assert.equal(warm.status, 200);
      await warm.arrayBuffer();
      await fs.writeFile(path.join(cacheDir, "secret.txt"), "do not serve");
      const hash = sha1("https://tfhub.dev/google/movenet/1");
      const attempts = [
        "/tfhub.dev/google/movenet/1/..%2f..%2fsecret.txt?tfjs-format=file",
        "/tfhub.dev/google/movenet/1/%2e%2e/secret.txt?tfjs-format=file",
        "/tfhub.dev/google/movenet/1/..\\..\\secret.txt?tfjs-format=file",
        "/tfhub.dev/google/movenet/1/%5c..%5csecret.txt?tfjs-format=file",
        "/tfhub.dev/google/movenet/1/model.json%00.bin?tfjs-format=file",
        `/_files/${hash}/../secret.txt`,
        `/_files/${hash}/%2e%2e/secret.txt`,
        `/_files/${hash}/..%2Fsecret.txt`,
        `/_files/${hash}//secret.txt`,
        "/_files/../secret.txt",
        "/tfhub.dev/../secret.txt?tf-hub-format=compressed",
      ];
      for (const attempt of attempts) {
        const response = await rawRequest(mirror.origin, attempt);
        assert.ok(response.status === 400 || response.status === 404, `${attempt}: ${response.status}`);
        assert.ok(!response.body.toString().includes("do not serve"), attempt);
      }
      // A symlink planted in the entry is not followed out of it.
      await fs.symlink(path.join(cacheDir, "secret.txt"), path.join(cacheDir, hash, "link.bin"));
      const viaLink = await rawRequest(
        mirror.origin,
        "/tfhub.dev/google/movenet/1/link.bin?tfjs-format=file",
      );
      assert.equal(viaLink.status, 404);
      const good = await rawRequest(mirror.origin, `/_files/${hash}/model.json`);
      assert.equal(good.status, 200);
    } finally {
      await mirror.stop();
    }
  });

  test("--token: 401 without it; clients send it to the mirror only and never store it", LIMIT, async () => {
    const token = "tok-3f9a1c77e2";
    const mirror = await mirrorFor(await tempDir(), ["--cors", "http://app.example"], {
      HUBCACHE_SERVE_TOKEN: token,
    });
    try {
      const url = `${mirror.origin}/tfhub.dev/google/movenet/1/model.json?tfjs-format=file`;
      assert.equal((await rawRequest(mirror.origin, "/")).status, 401);
      const wrong = await rawRequest(mirror.origin, "/", { headers: { authorization: "Bearer nope" } });
      assert.equal(wrong.status, 401);
      assert.equal(wrong.headers["www-authenticate"], 'Bearer realm="hubcache"');
      const ok = await fetch(url, {
        headers: { authorization: `Bearer ${token}`, origin: "http://app.example" },
      });
      assert.equal(ok.status, 200);
      assert.equal(ok.headers.get("access-control-allow-origin"), "http://app.example");
      await ok.arrayBuffer();
      const other = await fetch(url, {
        headers: { authorization: `Bearer ${token}`, origin: "http://evil.example" },
      });
      assert.equal(other.headers.get("access-control-allow-origin"), null);
      await other.arrayBuffer();

      const clientCache = await tempDir("client-");
      const without = await runCli(
        ["resolve", "--cache-dir", clientCache, "https://tfhub.dev/google/movenet/1"],
        {
          env: { HUBCACHE_MIRROR: mirror.origin },
        },
      );
      assert.equal(without.code, 1);
      assert.match(without.stderr, /ERR_HUBCACHE_UNAUTHORIZED/);
      assert.match(without.stderr, /HUBCACHE_MIRROR_TOKEN/);
      const withToken = await runCli(
        ["resolve", "--cache-dir", clientCache, "https://tfhub.dev/google/movenet/1"],
        {
          env: { HUBCACHE_MIRROR: mirror.origin, HUBCACHE_MIRROR_TOKEN: token },
        },
      );
      assert.equal(withToken.code, 0, withToken.stderr);
      for (const [name, bytes] of await readTree(clientCache)) {
        assert.ok(!bytes.includes(token), `the token is in ${name}`);
      }
      assert.ok(!mirror.run.stderr().includes(token), "the token is in the access log");
    } finally {
      await mirror.stop();
    }
  });

  test("a client dropping mid-request or mid-body cancels nothing for the others", LIMIT, async () => {
    const cacheDir = await tempDir();
    const mirror = await mirrorFor(cacheDir);
    try {
      const url = `${mirror.origin}/tfhub.dev/google/saved/1?tf-hub-format=compressed`;
      const before = hub.downloads().length;
      const release = hub.holdDownloads();
      const quitter = new AbortController();
      const dropped = fetch(url, { signal: quitter.signal }).catch((error: unknown) => error);
      await waitUntil(() => hub.downloads().length > before, "the upstream download");
      quitter.abort();
      await dropped;
      const stayer = fetch(url, { headers: { "accept-encoding": "identity" } });
      await sleep(200);
      release();
      const response = await stayer;
      assert.equal(response.status, 200);
      assertSameTree(
        await untar(Buffer.from(await response.arrayBuffer())),
        await readTree(savedDir),
        "stayer",
      );
      assert.equal(hub.downloads().length, before + 1);
      assert.ok(existsSync(path.join(cacheDir, sha1("https://tfhub.dev/google/saved/1"))), "published");

      // Mid-body: read one chunk, then hang up.
      await new Promise<void>((resolve, reject) => {
        const req = http.get(url, { agent: false }, (res) => {
          res.once("data", () => {
            req.destroy();
            resolve();
          });
        });
        req.on("error", (error) => (req.destroyed ? resolve() : reject(error)));
      });
      const again = await fetch(url);
      assert.equal(again.status, 200);
      assertSameTree(
        await untar(Buffer.from(await again.arrayBuffer())),
        await readTree(savedDir),
        "after a drop",
      );
      assert.equal(hub.downloads().length, before + 1);
      assert.deepEqual(await leftovers(cacheDir), []);
    } finally {
      await mirror.stop();
    }
  });

  test("a failed upstream download is never published; the client gets a coded error", LIMIT, async () => {
    const cacheDir = await tempDir();
    const mirror = await mirrorFor(cacheDir);
    try {
      const response = await fetch(`${mirror.origin}/tfhub.dev/google/broken/1?tf-hub-format=compressed`);
      assert.equal(response.status, 502);
      const body = (await response.json()) as { error: { code: string } };
      assert.equal(body.error.code, "ERR_HUBCACHE_NOT_AN_ARCHIVE");
      assert.ok(!existsSync(path.join(cacheDir, sha1("https://tfhub.dev/google/broken/1"))));
      assert.deepEqual(await leftovers(cacheDir), []);
      const client = await runCli(
        ["resolve", "--cache-dir", await tempDir(), "https://tfhub.dev/google/broken/1"],
        {
          env: { HUBCACHE_MIRROR: mirror.origin, HUBCACHE_RETRIES: "0" },
        },
      );
      assert.equal(client.code, 1);
      assert.match(client.stderr, /error\[ERR_HUBCACHE_HTTP\]/);
      const missing = await fetch(`${mirror.origin}/tfhub.dev/google/nothing/1?tf-hub-format=compressed`);
      assert.equal(missing.status, 404);
      await missing.arrayBuffer();
    } finally {
      await mirror.stop();
    }
  });

  test(
    "info reads through the mirror (--mirror): archives, and TF.js files in UNCOMPRESSED mode with a token",
    LIMIT,
    async () => {
      const token = "tok-info-51d0";
      const mirror = await mirrorFor(await tempDir(), [], { HUBCACHE_SERVE_TOKEN: token });
      try {
        const handle = "https://tfhub.dev/google/movenet/1";
        const env = { HUBCACHE_MIRROR_TOKEN: token };
        const cached = await runCli(
          ["info", "--json", "--mirror", mirror.origin, "--cache-dir", await tempDir(), handle],
          { env },
        );
        assert.equal(cached.code, 0, cached.stderr);
        type Info = { handle: string; kind: string; location: string; inputs: unknown[]; outputs: unknown[] };
        const [described] = JSON.parse(cached.stdout) as Info[];
        assert.equal(described?.handle, handle);
        assert.equal(described.kind, "graph-model");
        const inPlace = await runCli(
          [
            "info",
            "--json",
            "--mirror",
            mirror.origin,
            "--load-format",
            "UNCOMPRESSED",
            "--format",
            "tfjs",
            handle,
          ],
          { env },
        );
        assert.equal(inPlace.code, 0, inPlace.stderr);
        const [remote] = JSON.parse(inPlace.stdout) as Info[];
        assert.ok(
          remote?.location.startsWith(`${mirror.origin}/tfhub.dev/google/movenet/1/`),
          remote?.location,
        );
        assert.deepEqual(
          [remote?.kind, remote?.inputs, remote?.outputs],
          [described.kind, described.inputs, described.outputs],
        );
        const log = mirror.run.stderr();
        assert.match(log, /"GET \/tfhub\.dev\/google\/movenet\/1\/model\.json\?tfjs-format=file" 200/);
        assert.equal(hub.requests.filter((r) => r.url.startsWith("/google/movenet/1?")).length >= 1, true);
      } finally {
        await mirror.stop();
      }
    },
  );

  test("an unreachable mirror fails with a coded error naming it (no fallback)", LIMIT, async () => {
    const result = await runCli(
      ["resolve", "--cache-dir", await tempDir(), "https://tfhub.dev/google/saved/1"],
      {
        env: { HUBCACHE_MIRROR: "http://127.0.0.1:9", HUBCACHE_RETRIES: "0" },
      },
    );
    assert.equal(result.code, 1);
    assert.match(
      result.stderr,
      /error\[ERR_HUBCACHE_NETWORK\]: The mirror http:\/\/127\.0\.0\.1:9 could not be reached/,
    );
    assert.match(result.stderr, /never falls back to the internet/);
  });

  test(
    "hundreds of concurrent requests are all answered correctly; the index lists the model",
    LIMIT,
    async () => {
      const mirror = await mirrorFor(await tempDir());
      try {
        const base = `${mirror.origin}/tfhub.dev/google/movenet/1`;
        const weights = await fs.readFile(path.join(movenetDir, "group1-shard1of1.bin"));
        const json = await fs.readFile(path.join(movenetDir, "model.json"));
        const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
        const get = (
          target: string,
          headers: Record<string, string> = {},
        ): Promise<{ status: number; body: Buffer }> =>
          new Promise((resolve, reject) => {
            http
              .get(target, { agent, headers }, (res) => {
                const chunks: Buffer[] = [];
                res.on("data", (c: Buffer) => chunks.push(c));
                res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
              })
              .on("error", reject);
          });
        const results = await Promise.all(
          Array.from({ length: 300 }, (_, i) =>
            i % 3 === 0
              ? get(`${base}/model.json?tfjs-format=file`).then(
                  (r) => r.status === 200 && r.body.equals(json),
                )
              : i % 3 === 1
                ? get(`${base}/group1-shard1of1.bin?tfjs-format=file`).then(
                    (r) => r.status === 200 && r.body.equals(weights),
                  )
                : get(`${base}/group1-shard1of1.bin?tfjs-format=file`, {
                    range: `bytes=${i}-${i + 99}`,
                  }).then((r) => r.status === 206 && r.body.equals(weights.subarray(i, i + 100))),
          ),
        );
        agent.destroy();
        assert.equal(results.filter(Boolean).length, 300);
        assert.equal(hub.requests.filter((r) => r.url.startsWith("/google/movenet/1?")).length >= 1, true);

        const listing = (await (
          await fetch(`${mirror.origin}/`, { headers: { accept: "application/json" } })
        ).json()) as {
          totalBytes: number;
          entries: { handle: string; hash: string; bytes: number; files: number; state: string }[];
        };
        const entry = listing.entries.find((e) => e.handle === "https://tfhub.dev/google/movenet/1");
        assert.ok(entry, JSON.stringify(listing));
        assert.equal(entry.hash, sha1("https://tfhub.dev/google/movenet/1"));
        assert.equal(entry.bytes, weights.length + json.length);
        assert.equal(entry.state, "ok");
        const page = await (await fetch(`${mirror.origin}/`)).text();
        assert.match(page, /https:\/\/tfhub\.dev\/google\/movenet\/1/);
        assert.match(page, /HUBCACHE_MIRROR=/);
        // One access log line per request, with the path.
        await waitUntil(
          () => (mirror.run.stderr().match(/group1-shard1of1\.bin/g) ?? []).length >= 200,
          "access log",
        );
      } finally {
        await mirror.stop();
      }
    },
  );

  test(
    "--max-downloads bounds upstream; a stalled client holds nothing; oversized headers get 431",
    LIMIT,
    async () => {
      const mirror = await mirrorFor(await tempDir(), ["--max-downloads", "1"]);
      try {
        const seen = compressedRequests("/google/movenet/1");
        const savedBefore = compressedRequests("/google/saved/1");
        const release = hub.holdDownloads();
        const first = fetch(`${mirror.origin}/tfhub.dev/google/saved/1?tf-hub-format=compressed`);
        await waitUntil(() => compressedRequests("/google/saved/1") > savedBefore, "the first download");
        const second = fetch(`${mirror.origin}/tfhub.dev/google/movenet/1/model.json?tfjs-format=file`);
        await sleep(700);
        assert.equal(
          compressedRequests("/google/movenet/1"),
          seen,
          "the second model waits for a download slot",
        );
        release();
        const [a, b] = await Promise.all([first, second]);
        assert.equal(a.status, 200);
        assert.equal(b.status, 200);
        await a.arrayBuffer();
        await b.arrayBuffer();
        assert.equal(compressedRequests("/google/movenet/1"), seen + 1);

        // A client that asks for the archive and never reads: everyone else is still served.
        const stalled = http.get(
          `${mirror.origin}/tfhub.dev/google/saved/1?tf-hub-format=compressed`,
          { agent: false },
          (res) => res.pause(),
        );
        stalled.on("error", () => undefined);
        await sleep(300);
        const others = await Promise.all(
          Array.from({ length: 20 }, () =>
            fetch(`${mirror.origin}/tfhub.dev/google/movenet/1/model.json?tfjs-format=file`),
          ),
        );
        assert.ok(others.every((r) => r.status === 200));
        await Promise.all(others.map((r) => r.arrayBuffer()));
        stalled.destroy();

        const huge = await rawRequest(mirror.origin, "/", { headers: { "x-filler": "a".repeat(32 * 1024) } });
        assert.equal(huge.status, 431);
      } finally {
        await mirror.stop();
      }
    },
  );

  test("two mirrors on one cache dir share it: one download between them", LIMIT, async () => {
    const cacheDir = await tempDir();
    const [one, two] = await Promise.all([mirrorFor(cacheDir), mirrorFor(cacheDir)]);
    try {
      const before = hub.downloads().length;
      const release = hub.holdDownloads();
      const answers = [one, two, one, two].map((m) =>
        fetch(`${m.origin}/tfhub.dev/google/saved/1?tf-hub-format=compressed`).then(async (r) => ({
          status: r.status,
          body: Buffer.from(await r.arrayBuffer()),
        })),
      );
      await waitUntil(() => hub.downloads().length > before, "the first upstream download");
      await sleep(1000);
      release();
      for (const answer of await Promise.all(answers)) {
        assert.equal(answer.status, 200);
        assertSameTree(await untar(answer.body), await readTree(savedDir), "shared cache");
      }
      assert.equal(hub.downloads().length, before + 1);
    } finally {
      await Promise.all([one.stop(), two.stop()]);
    }
  });

  test(
    "SIGTERM during a cold download: exits at once, publishes nothing, leaves nothing",
    LIMIT,
    async () => {
      const cacheDir = await tempDir();
      const mirror = await mirrorFor(cacheDir);
      const before = hub.downloads().length;
      const release = hub.holdDownloads();
      try {
        const pending = fetch(`${mirror.origin}/tfhub.dev/google/saved/1?tf-hub-format=compressed`).catch(
          (error: unknown) => error,
        );
        await waitUntil(() => hub.downloads().length > before, "the upstream download");
        const { code, ms } = await mirror.stop();
        assert.ok(code === 0 || code === 143, `exit code ${code}`); // 143: a CLI that reports the signal
        assert.ok(ms < 8000, `took ${ms} ms`);
        const answer = await pending;
        assert.ok(
          !(answer instanceof Response) || answer.status >= 500,
          "never a 200 for an unfinished model",
        );
        assert.ok(!existsSync(path.join(cacheDir, sha1("https://tfhub.dev/google/saved/1"))));
        assert.deepEqual(await leftovers(cacheDir), []);
      } finally {
        release();
      }
    },
  );

  test("serve --help, and bad usage exits 2 with a coded message", LIMIT, async () => {
    const help = await runCli(["help", "serve"]);
    assert.equal(help.code, 0);
    for (const word of [
      "--host",
      "--port",
      "--upstream",
      "--token",
      "--cors",
      "--max-downloads",
      "--cache-dir",
    ]) {
      assert.ok(help.stdout.includes(word), word);
    }
    assert.match((await runCli(["--help"])).stdout, /hubcache serve/);
    for (const args of [
      ["--port", "http"],
      ["--upstream", "tfhub.dev"],
      ["--upstream", "tfhub.dev=ftp://x"],
      ["--mirror", "http://127.0.0.1:1"],
      ["--max-downloads", "0"],
    ]) {
      const run = await runCli(["serve", ...args]);
      assert.equal(run.code, 2, args.join(" "));
      assert.match(run.stderr, /error\[ERR_HUBCACHE_USAGE\]/);
      assert.equal(run.stdout, "");
    }
  });

  test(
    "SIGTERM: stops accepting and exits within a few seconds, even with a stalled client",
    LIMIT,
    async () => {
      const mirror = await mirrorFor(await tempDir());
      // A client that asks for the archive and never reads it.
      const stalled = http.get(
        `${mirror.origin}/tfhub.dev/google/saved/1?tf-hub-format=compressed`,
        { agent: false },
        (res) => {
          res.pause();
        },
      );
      stalled.on("error", () => undefined);
      await sleep(1000);
      const { code, ms } = await mirror.stop();
      stalled.destroy();
      assert.ok(code === 0 || code === 143, `exit code ${code}`); // 143: a CLI that reports the signal
      assert.ok(ms < 8000, `took ${ms} ms`);
      await assert.rejects(fetch(`${mirror.origin}/`));
    },
  );
});
