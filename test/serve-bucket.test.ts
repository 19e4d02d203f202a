/**
 * `hubcache serve --cache-dir s3://…` (s3rver) and `gs://…` (the GCS JSON API server): a real
 * mirror child process whose cache is a bucket serves every form from it (archives, files with
 * Range/ETag/304, UNCOMPRESSED), refuses traversal, serves entries a local resolve or Python wrote
 * to the bucket, and gives a file the same ETag from a local cache and from a bucket.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { promises as fs } from "node:fs";
import path from "node:path";
import { gunzipSync } from "node:zlib";
import { after, before, describe, test } from "node:test";
import * as tar from "tar";
import { descriptorText } from "../src/cache/layout.js";
import { listEntries, removeEntries } from "../src/manage/index.js";
import { resolve, resolveRouted } from "../src/resolve.js";
import { upstreamRoute } from "../src/net/route.js";
import { openStorage } from "../src/storage/open.js";
import { movenetModelDir, readTree, savedModelDir, tarGz, tempDir } from "./helpers/fixtures.js";
import { type HubServer, startHubServer } from "./helpers/hub-server.js";
import { type Mirror, mirrorLog, rawRequest, startMirror } from "./helpers/mirror.js";
import { AWS_ISOLATION, type TestStores, startTestStores } from "./helpers/object-stores.js";
import { TEST_TIMEOUT_MS } from "./helpers/processes.js";
import { until } from "./helpers/wait.js";

Object.assign(process.env, AWS_ISOLATION);

const LIMIT = { timeout: TEST_TIMEOUT_MS };
const sha1 = (text: string): string => createHash("sha1").update(text).digest("hex");
/** An ETag from the record: entry+path id, size, CRC-32 (8 hex digits). */
const RECORD_ETAG = /^"[0-9a-f]{16}-[0-9a-f]+-[0-9a-f]{8}"$/;

let stores: TestStores;
let hub: HubServer;
let savedDir: string;
let savedArchive: Buffer;
let movenetDir: string;
let counter = 0;

before(async () => {
  stores = await startTestStores();
  hub = await startHubServer();
  savedDir = await savedModelDir(256 * 1024);
  movenetDir = await movenetModelDir();
  savedArchive = await tarGz(savedDir);
  hub.add("/google/saved/1", { archive: savedArchive, dir: savedDir });
  hub.add("/google/movenet/1", { archive: await tarGz(movenetDir), dir: movenetDir });
  hub.add("/google/local/1", { archive: await tarGz(movenetDir), dir: movenetDir });
  // A model inside one wrapping folder, as some archives are packed.
  const wrapped = await tempDir("wrapped-");
  await fs.mkdir(path.join(wrapped, "model"));
  await movenetModelDir(path.join(wrapped, "model"));
  hub.add("/google/wrapped/1", { archive: await tarGz(wrapped) });
});
after(async () => {
  await Promise.all([stores.close(), hub.close()]);
});

function mirrorOn(cacheDir: string): Promise<Mirror> {
  return startMirror(["--cache-dir", cacheDir, "--upstream", `tfhub.dev=${hub.origin}`], stores.env);
}

function archiveRequests(modelPath: string): number {
  return hub.requests.filter((r) => r.url.startsWith(`${modelPath}?`) && r.url.includes("compressed")).length;
}

async function untar(body: Buffer): Promise<Map<string, Buffer>> {
  const dir = await tempDir("untar-");
  const archive = `${dir}.tar`;
  await fs.writeFile(archive, body);
  await tar.x({ file: archive, cwd: dir });
  return readTree(dir);
}

function assertSameTree(actual: Map<string, Buffer>, expected: Map<string, Buffer>, what: string): void {
  assert.deepEqual([...actual.keys()].sort(), [...expected.keys()].sort(), what);
  for (const [name, bytes] of expected) assert.ok(actual.get(name)?.equals(bytes), `${what}: ${name}`);
}

async function etagOf(origin: string, target: string): Promise<string> {
  const response = await rawRequest(origin, target, { method: "HEAD" });
  assert.equal(response.status, 200, `${target}: ${response.body.toString()}`);
  return String(response.headers.etag);
}

for (const scheme of ["s3", "gs"] as const) {
  describe(`hubcache serve with its cache on ${scheme}://`, () => {
    const bucketDir = (): string => `${scheme}://${stores.bucket}/serve-${++counter}`;

    test(
      "archives: cold then warm, plain, gzip'd and .tar.gz, one download; the tar's ETag",
      LIMIT,
      async () => {
        const cacheDir = bucketDir();
        const mirror = await mirrorOn(cacheDir);
        try {
          const target = "/tfhub.dev/google/saved/1?tf-hub-format=compressed";
          const before = archiveRequests("/google/saved/1");
          const expected = await readTree(savedDir);
          const cold = await rawRequest(mirror.origin, target);
          assert.equal(cold.status, 200, cold.body.toString());
          assertSameTree(await untar(cold.body), expected, "cold");
          const warm = await rawRequest(mirror.origin, target);
          assert.equal(warm.status, 200);
          assert.equal(warm.headers["content-type"], "application/x-tar");
          assertSameTree(await untar(warm.body), expected, "warm");
          const again = await rawRequest(mirror.origin, target);
          assert.ok(again.body.equals(warm.body), "the same bytes every time");
          const etag = String(warm.headers.etag);
          assert.match(etag, /^"tar-[0-9a-f]{32}"$/);
          assert.equal(again.headers.etag, etag);
          const notModified = await rawRequest(mirror.origin, target, { headers: { "if-none-match": etag } });
          assert.equal(notModified.status, 304);
          assert.equal(notModified.body.length, 0);

          const gzipped = await rawRequest(mirror.origin, target, { headers: { "accept-encoding": "gzip" } });
          assert.equal(gzipped.headers["content-encoding"], "gzip");
          assert.equal(gzipped.headers.etag, undefined, "no ETag where the bytes depend on zlib");
          assertSameTree(await untar(gunzipSync(gzipped.body)), expected, "Content-Encoding: gzip");
          const targz = await rawRequest(mirror.origin, `${target}&hubcache-archive=tar.gz`);
          assert.equal(targz.headers["content-type"], "application/gzip");
          assertSameTree(await untar(gunzipSync(targz.body)), expected, ".tar.gz");
          assert.equal(archiveRequests("/google/saved/1") - before, 1, "one upstream download");

          // The entry is in the bucket, and the index lists it from there.
          const listing = await listEntries({ cacheDir, env: stores.env });
          assert.deepEqual(
            listing.entries.map((e) => [e.handle, e.state, e.writer]),
            [["https://tfhub.dev/google/saved/1", "ok", "hubcache"]],
          );
          const index = await rawRequest(mirror.origin, "/", { headers: { accept: "application/json" } });
          const shown = JSON.parse(index.body.toString()) as {
            cacheDir: string;
            entries: { handle: string }[];
          };
          assert.equal(shown.cacheDir, cacheDir);
          assert.deepEqual(
            shown.entries.map((e) => e.handle),
            ["https://tfhub.dev/google/saved/1"],
          );
        } finally {
          await mirror.stop();
        }
      },
    );

    test(
      "a hubcache client gets the files form from a bucket entry: each file from /_files/",
      LIMIT,
      async () => {
        const handle = "https://tfhub.dev/google/saved/1";
        const mirror = await mirrorOn(bucketDir());
        try {
          const warm = await tempDir("bucket-files-warm-");
          await resolve(handle, { cacheDir: warm, mirror: mirror.origin });
          const before = mirrorLog(mirror).length;
          const bucketBefore = stores.s3Proxy.requests.length;
          const cacheDir = await tempDir("bucket-files-client-");
          const entry = await resolve(handle, { cacheDir, mirror: mirror.origin });
          const bucketRequests = stores.s3Proxy.requests.slice(bucketBefore);
          assertSameTree(await readTree(entry), await readTree(savedDir), "through the mirror");
          const record = JSON.parse(
            await fs.readFile(path.join(cacheDir, `${sha1(handle)}.hubcache.json`), "utf8"),
          ) as { archiveSha256?: string; files: { path: string; size: number; crc32?: string }[] };
          const nonEmpty = record.files.filter((file) => file.size > 0);
          // The mirror logs a request when its answer closes, which may come after the client is done.
          const fileLines = (): string[] =>
            mirrorLog(mirror)
              .slice(before)
              .filter((line) => line.startsWith(`GET /_files/${sha1(handle)}/`));
          await until(() => fileLines().length >= nonEmpty.length, "the mirror's log of the file requests");
          const log = mirrorLog(mirror).slice(before);
          const fileRequests = fileLines();
          assert.equal(fileRequests.length, nonEmpty.length, log.join("\n"));
          assert.ok(
            fileRequests.every((line) => line.endsWith(" 200")),
            log.join("\n"),
          );
          // The upstream archive's digest, carried from the bucket's record, not a re-packed tar's.
          assert.equal(record.archiveSha256, createHash("sha256").update(savedArchive).digest("hex"));
          assert.ok(nonEmpty.every((file) => /^[0-9a-f]{8}$/.test(file.crc32 ?? "")));
          if (scheme === "s3") {
            // One full check of the entry (a LIST of it), then a HEAD of its record and a GET per file.
            const shown = bucketRequests.map((r) => `${r.method} ${r.path}`).join("\n");
            const lists = bucketRequests.filter((r) => r.method === "GET" && r.path.endsWith("/"));
            const gets = bucketRequests.filter(
              (r) => r.method === "GET" && r.path.includes(`/${sha1(handle)}/`),
            );
            // (Without the reuse: a LIST per file, 3 here, and 29 requests.) Room for an SDK retry.
            assert.ok(lists.length <= 2, `a LIST for the list, not for each file:\n${shown}`);
            assert.equal(gets.length, nonEmpty.length, `one GET per file:\n${shown}`);
            assert.ok(bucketRequests.length <= 2 * nonEmpty.length + 10, `bucket requests:\n${shown}`);
          }
        } finally {
          await mirror.stop();
        }
      },
    );

    test(
      "files of a bucket entry: ETag, 304, Range 206 and 416, If-Range, HEAD, a wrapping folder",
      LIMIT,
      async () => {
        const mirror = await mirrorOn(bucketDir());
        try {
          const file = "/tfhub.dev/google/movenet/1/group1-shard1of1.bin?tfjs-format=file";
          const weights = await fs.readFile(path.join(movenetDir, "group1-shard1of1.bin"));
          const full = await rawRequest(mirror.origin, file);
          assert.equal(full.status, 200, full.body.toString());
          assert.ok(full.body.equals(weights));
          assert.equal(full.headers["content-length"], String(weights.length));
          assert.equal(full.headers["accept-ranges"], "bytes");
          assert.match(String(full.headers["cache-control"]), /immutable/);
          const etag = String(full.headers.etag);
          assert.match(etag, RECORD_ETAG);
          assert.equal(
            (await rawRequest(mirror.origin, file, { headers: { "if-none-match": etag } })).status,
            304,
          );

          const part = await rawRequest(mirror.origin, file, { headers: { range: "bytes=100-4195" } });
          assert.equal(part.status, 206);
          assert.equal(part.headers["content-range"], `bytes 100-4195/${weights.length}`);
          assert.ok(part.body.equals(weights.subarray(100, 4196)));
          if (scheme === "s3") {
            const reads = stores.s3Proxy.requests.filter(
              (r) => r.method === "GET" && r.path.endsWith("/group1-shard1of1.bin"),
            );
            assert.ok(
              reads.some((r) => r.headers.range === "bytes=100-4195"),
              "a Range request is a ranged read of the object",
            );
          }
          const suffix = await rawRequest(mirror.origin, file, { headers: { range: "bytes=-7" } });
          assert.equal(suffix.status, 206);
          assert.ok(suffix.body.equals(weights.subarray(weights.length - 7)));
          const open = await rawRequest(mirror.origin, file, {
            headers: { range: `bytes=${weights.length - 3}-` },
          });
          assert.ok(open.body.equals(weights.subarray(weights.length - 3)));
          const sameRange = await rawRequest(mirror.origin, file, {
            headers: { range: "bytes=0-9", "if-range": etag },
          });
          assert.equal(sameRange.status, 206);
          const stale = await rawRequest(mirror.origin, file, {
            headers: { range: "bytes=0-9", "if-range": '"x"' },
          });
          assert.equal(stale.status, 200);
          assert.equal(stale.body.length, weights.length);
          const beyond = await rawRequest(mirror.origin, file, {
            headers: { range: `bytes=${weights.length}-` },
          });
          assert.equal(beyond.status, 416);
          assert.equal(beyond.headers["content-range"], `bytes */${weights.length}`);

          const json = "/tfhub.dev/google/movenet/1/model.json?tfjs-format=file";
          const head = await rawRequest(mirror.origin, json, { method: "HEAD" });
          assert.equal(head.status, 200);
          assert.equal(head.body.length, 0);
          assert.equal(head.headers["content-type"], "application/json");
          assert.equal(
            head.headers["content-length"],
            String((await fs.stat(path.join(movenetDir, "model.json"))).size),
          );
          assert.equal(
            (await rawRequest(mirror.origin, "/tfhub.dev/google/movenet/1/nothing.bin?tfjs-format=file"))
              .status,
            404,
          );

          // Files are named relative to the model's folder, inside one wrapping folder too.
          const wrapped = await rawRequest(
            mirror.origin,
            "/tfhub.dev/google/wrapped/1/model.json?tfjs-format=file",
          );
          assert.equal(wrapped.status, 200, wrapped.body.toString());
          assert.ok(wrapped.body.equals(await fs.readFile(path.join(movenetDir, "model.json"))));
        } finally {
          await mirror.stop();
        }
      },
    );

    test(
      "UNCOMPRESSED: 303, then the files from the bucket, also through a restarted mirror",
      LIMIT,
      async () => {
        const cacheDir = bucketDir();
        let mirror = await mirrorOn(cacheDir);
        try {
          const handle = "https://tfhub.dev/google/saved/1";
          const answer = await rawRequest(
            mirror.origin,
            "/tfhub.dev/google/saved/1?tf-hub-format=uncompressed",
          );
          assert.equal(answer.status, 303, answer.body.toString());
          const location = answer.body.toString().trim();
          assert.equal(location, `${mirror.origin}/_files/${sha1(handle)}`);
          assert.equal(answer.headers.location, location);
          const expected = await readTree(savedDir);
          for (const name of [
            "saved_model.pb",
            "variables/variables.index",
            "assets/nested/deeper/labels.txt",
          ]) {
            const file = await rawRequest(mirror.origin, `/_files/${sha1(handle)}/${name}`);
            assert.equal(file.status, 200, name);
            assert.ok(file.body.equals(expected.get(name) ?? Buffer.alloc(1)), name);
          }
          // A new mirror process knows no handles: /_files/<hash> reads the descriptor in the bucket.
          await mirror.stop();
          mirror = await mirrorOn(cacheDir);
          const downloads = archiveRequests("/google/saved/1");
          const data = await rawRequest(
            mirror.origin,
            `/_files/${sha1(handle)}/variables/variables.data-00000-of-00001`,
            {
              headers: { range: "bytes=8-15" },
            },
          );
          assert.equal(data.status, 206, data.body.toString());
          assert.ok(
            data.body.equals(
              expected.get("variables/variables.data-00000-of-00001")?.subarray(8, 16) ?? Buffer.alloc(0),
            ),
          );
          assert.equal(
            (await rawRequest(mirror.origin, `/_files/${"0".repeat(40)}/saved_model.pb`)).status,
            404,
          );
          assert.equal(archiveRequests("/google/saved/1"), downloads, "served from the bucket");
        } finally {
          await mirror.stop();
        }
      },
    );

    test("traversal attempts never leave the entry's prefix", LIMIT, async () => {
      const cacheDir = bucketDir();
      const mirror = await mirrorOn(cacheDir);
      try {
        const handle = "https://tfhub.dev/google/movenet/1";
        const hash = sha1(handle);
        assert.equal(
          (await rawRequest(mirror.origin, `/_files/${hash}/model.json`)).status,
          404,
          "not cached yet",
        );
        const warm = await rawRequest(
          mirror.origin,
          "/tfhub.dev/google/movenet/1/model.json?tfjs-format=file",
        );
        assert.equal(warm.status, 200);
        const storage = await openStorage(cacheDir, { env: stores.env });
        await storage.write("secret.txt", "do not serve");
        await storage.write(`${sha1("https://tfhub.dev/google/other/1")}/secret.txt`, "do not serve");
        const attempts = [
          "/tfhub.dev/google/movenet/1/..%2f..%2fsecret.txt?tfjs-format=file",
          "/tfhub.dev/google/movenet/1/%2e%2e/secret.txt?tfjs-format=file",
          "/tfhub.dev/google/movenet/1/..\\..\\secret.txt?tfjs-format=file",
          "/tfhub.dev/google/movenet/1/%5c..%5csecret.txt?tfjs-format=file",
          "/tfhub.dev/google/movenet/1/model.json%00.bin?tfjs-format=file",
          "/tfhub.dev/google/movenet/1/../../secret.txt?tfjs-format=file",
          `/_files/${hash}/../secret.txt`,
          `/_files/${hash}/%2e%2e/secret.txt`,
          `/_files/${hash}/..%2Fsecret.txt`,
          `/_files/${hash}//secret.txt`,
          `/_files/${hash}/./secret.txt`,
          `/_files/${hash}/secret.txt`,
          `/_files/${hash}/../${sha1("https://tfhub.dev/google/other/1")}/secret.txt`,
          "/_files/../secret.txt",
        ];
        for (const attempt of attempts) {
          const response = await rawRequest(mirror.origin, attempt);
          assert.ok(response.status === 400 || response.status === 404, `${attempt}: ${response.status}`);
          assert.ok(!response.body.toString().includes("do not serve"), attempt);
        }
        assert.equal((await rawRequest(mirror.origin, `/_files/${hash}/model.json`)).status, 200);
      } finally {
        await mirror.stop();
      }
    });

    test("entries a local resolve and Python wrote to the bucket are served from it", LIMIT, async () => {
      const cacheDir = bucketDir();
      const handle = "https://tfhub.dev/google/local/1";
      const route = upstreamRoute(new Map([["tfhub.dev", hub.origin]]));
      const location = await resolveRouted(handle, { cacheDir, env: stores.env }, route);
      assert.equal(location, `${cacheDir}/${sha1(handle)}`);
      // A Python-style entry: files and a descriptor, no record.
      const python = "https://tfhub.dev/google/python-only/1";
      const storage = await openStorage(cacheDir, { env: stores.env });
      await storage.write(`${sha1(python)}/saved_model.pb`, "python's saved model");
      await storage.write(`${sha1(python)}/variables/variables.index`, "python's index");
      await storage.write(`${sha1(python)}.descriptor.txt`, descriptorText(python));

      const mirror = await mirrorOn(cacheDir);
      try {
        const requests = hub.requests.length;
        const weights = await rawRequest(
          mirror.origin,
          "/tfhub.dev/google/local/1/group1-shard1of1.bin?tfjs-format=file",
        );
        assert.equal(weights.status, 200, weights.body.toString());
        assert.ok(weights.body.equals(await fs.readFile(path.join(movenetDir, "group1-shard1of1.bin"))));
        assert.match(String(weights.headers.etag), RECORD_ETAG);
        const archive = await rawRequest(mirror.origin, "/tfhub.dev/google/local/1?tf-hub-format=compressed");
        assertSameTree(await untar(archive.body), await readTree(movenetDir), "local resolve's entry");

        const pb = await rawRequest(mirror.origin, `/_files/${sha1(python)}/saved_model.pb`);
        assert.equal(pb.status, 200, pb.body.toString());
        assert.equal(pb.body.toString(), "python's saved model");
        const etag = String(pb.headers.etag);
        assert.match(etag, /^"[0-9a-f]{16}-14-[0-9a-f]+"$/, "size and modification time, no record");
        assert.equal(
          (
            await rawRequest(mirror.origin, `/_files/${sha1(python)}/saved_model.pb`, {
              headers: { "if-none-match": etag },
            })
          ).status,
          304,
        );
        const pyArchive = await rawRequest(
          mirror.origin,
          "/tfhub.dev/google/python-only/1?tf-hub-format=compressed",
        );
        assert.equal(pyArchive.status, 200);
        assert.equal(pyArchive.headers.etag, undefined, "no archive ETag without a record");
        const files = await untar(pyArchive.body);
        assert.deepEqual([...files.keys()].sort(), ["saved_model.pb", "variables/variables.index"]);
        assert.equal(hub.requests.length, requests, "nothing asked of the hub");
      } finally {
        await mirror.stop();
      }
    });

    test(
      "ETags: equal from a local cache and a bucket and across restarts; new when the model changes",
      LIMIT,
      async () => {
        const cacheDir = bucketDir();
        const modelPath = `/google/changing-${scheme}`;
        const changed = await movenetModelDir();
        const weightsFile = path.join(changed, "group1-shard1of1.bin");
        hub.add(modelPath, { archive: await tarGz(movenetDir), dir: movenetDir });
        const local = await mirrorOn(await tempDir());
        let bucket = await mirrorOn(cacheDir);
        const files = ["model.json", "group1-shard1of1.bin"].map(
          (name) => `/tfhub.dev${modelPath}/${name}?tfjs-format=file`,
        );
        const archive = `/tfhub.dev${modelPath}?tf-hub-format=compressed`;
        try {
          const fromLocal = await Promise.all(files.map((file) => etagOf(local.origin, file)));
          const fromBucket = await Promise.all(files.map((file) => etagOf(bucket.origin, file)));
          for (const etag of fromBucket) assert.match(etag, RECORD_ETAG);
          assert.deepEqual(fromBucket, fromLocal, "the same entry, local or in a bucket");
          const tarEtag = await etagOf(bucket.origin, archive);
          assert.match(tarEtag, /^"tar-/);

          await bucket.stop();
          bucket = await mirrorOn(cacheDir);
          assert.deepEqual(
            await Promise.all(files.map((file) => etagOf(bucket.origin, file))),
            fromBucket,
            "restart",
          );
          assert.equal(await etagOf(bucket.origin, archive), tarEtag, "the tar's, after a restart");
          const cached = await rawRequest(bucket.origin, files[1] ?? "", {
            headers: { "if-none-match": fromBucket[1] ?? "" },
          });
          assert.equal(cached.status, 304, "a browser's cached copy is still good after a restart");

          // Upstream changes one byte of the weights (same size); the entry is removed and fetched again.
          const bytes = await fs.readFile(weightsFile);
          bytes[1000] = (bytes[1000] ?? 0) ^ 0xff;
          await fs.writeFile(weightsFile, bytes);
          hub.add(modelPath, { archive: await tarGz(changed), dir: changed });
          const removed = await removeEntries([`https://tfhub.dev${modelPath}`], {
            cacheDir,
            env: stores.env,
          });
          assert.deepEqual(
            removed.results.map((r) => r.status),
            ["removed"],
          );
          const after = await Promise.all(files.map((file) => etagOf(bucket.origin, file)));
          assert.equal(after[0], fromBucket[0], "model.json did not change");
          assert.notEqual(after[1], fromBucket[1], "the weights did");
          assert.notEqual(await etagOf(bucket.origin, archive), tarEtag, "and so did the tar's");
          const fresh = await rawRequest(bucket.origin, files[1] ?? "", {
            headers: { "if-none-match": fromBucket[1] ?? "" },
          });
          assert.equal(fresh.status, 200);
          assert.ok(fresh.body.equals(bytes));
        } finally {
          await Promise.all([local.stop(), bucket.stop()]);
        }
      },
    );
  });
}
