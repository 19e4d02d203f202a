// gs:// and s3:// handles, UNCOMPRESSED locations, and storage errors, against real servers:
// s3rver (S3 protocol, behind a recording proxy), the GCS JSON API server, a static http server.
import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import path from "node:path";
import { buffer } from "node:stream/consumers";
import { after, before, describe, test } from "node:test";
import { type HubcacheEvent, modelInfo, openStorage, resolve } from "hubcache";
import { entryPaths } from "../src/cache/layout.js";
import { loadSdk } from "../src/storage/sdk.js";
import { movenetModelDir, readTree, savedModelDir, tarGz, tempDir } from "./helpers/fixtures.js";
import type { GcsFake } from "./helpers/gcs-fake.js";
import { type HubServer, startHubServer } from "./helpers/hub-server.js";
import {
  AWS_ISOLATION,
  type TestStores,
  s3Env,
  startTestStores,
  uniqueBucket,
} from "./helpers/object-stores.js";
import { type PausingProxy, startPausingProxy } from "./helpers/pausing-proxy.js";
import { type StaticServer, startStaticServer } from "./helpers/static-server.js";
import { expectCode } from "./helpers/assertions.js";

Object.assign(process.env, AWS_ISOLATION);

let stores: TestStores;
let s3Proxy: PausingProxy;
let gcs: GcsFake;
let hub: HubServer;
let web: StaticServer;
let webRoot: string;
let source: string;
let tfjsSource: string;
const bucket = uniqueBucket();
let env: Record<string, string>;

async function upload(location: string, dir: string, storageEnv: Record<string, string>): Promise<void> {
  const storage = await openStorage(location, { env: storageEnv });
  for (const [rel, bytes] of await readTree(dir)) await storage.write(rel, bytes);
}

before(async () => {
  stores = await startTestStores(bucket);
  ({ s3Proxy, gcs, env } = stores);
  hub = await startHubServer();
  webRoot = await tempDir("web-");
  web = await startStaticServer(webRoot);

  source = await savedModelDir(64 * 1024);
  tfjsSource = await movenetModelDir();
  const archive = await tarGz(source);
  const plainTar = await tarGz(source, { gzip: false });
  for (const scheme of ["s3", "gs"]) {
    const models = await openStorage(`${scheme}://${bucket}/models`, { env });
    await models.write("saved.tar.gz", archive);
    await models.write("saved.tgz", archive);
    await models.write("plain.tar", plainTar);
    await models.write("not-an-archive.tar.gz", "<html>sign in</html>");
  }
  await upload(`s3://${bucket}/uncompressed/movenet`, tfjsSource, env);
  await upload(`gs://${bucket}/uncompressed/movenet`, tfjsSource, env);
  await fs.cp(tfjsSource, path.join(webRoot, "uncompressed", "movenet"), { recursive: true });
});
after(async () => {
  await Promise.all([stores.close(), hub.close(), web.close()]);
});

for (const scheme of ["s3", "gs"] as const) {
  describe(`${scheme}:// handles`, () => {
    const requestsTo = (): number => (scheme === "s3" ? s3Proxy.requests.length : gcs.requests.length);

    for (const name of ["saved.tar.gz", "saved.tgz", "plain.tar"]) {
      test(`an archive (${name}) is downloaded, extracted and cached like an http archive`, async () => {
        const cacheDir = await tempDir();
        const handle = `${scheme}://${bucket}/models/${name}`;
        const events: HubcacheEvent[] = [];
        const dir = await resolve(handle, { cacheDir, env, onEvent: (e) => events.push(e) });
        const paths = entryPaths(cacheDir, handle);
        assert.equal(dir, paths.dir, "same entry naming as http archives: sha1 of the handle");
        assert.deepEqual(await readTree(dir), await readTree(source));
        assert.match(
          await fs.readFile(paths.descriptor, "utf8"),
          new RegExp(`^Module: ${handle.replace(/\./g, "\\.")}\\n`),
        );
        assert.ok(events.some((e) => e.type === "progress" && e.done && e.downloadedBytes > 0));
        // Warm: a local hit, no request to the bucket.
        const before = requestsTo();
        assert.equal(await resolve(handle, { cacheDir, env }), dir);
        assert.equal(requestsTo(), before);
      });
    }

    test("an object that is not an archive is ERR_HUBCACHE_NOT_AN_ARCHIVE and leaves no entry", async () => {
      const cacheDir = await tempDir();
      const handle = `${scheme}://${bucket}/models/not-an-archive.tar.gz`;
      await expectCode(resolve(handle, { cacheDir, env }), "ERR_HUBCACHE_NOT_AN_ARCHIVE");
      assert.deepEqual(await fs.readdir(cacheDir), []);
    });

    test("a missing archive is ERR_HUBCACHE_NOT_FOUND naming it", async () => {
      const cacheDir = await tempDir();
      const handle = `${scheme}://${bucket}/models/missing.tar.gz`;
      const error = await expectCode(resolve(handle, { cacheDir, env }), "ERR_HUBCACHE_NOT_FOUND");
      assert.match(error.message, /missing\.tar\.gz does not exist/);
    });

    test("a missing bucket fails at once: ERR_HUBCACHE_NOT_FOUND naming the bucket", async () => {
      const cacheDir = await tempDir();
      const error = await expectCode(
        resolve(`${scheme}://${bucket}-nope/models/saved.tar.gz`, { cacheDir, env }),
        "ERR_HUBCACHE_NOT_FOUND",
      );
      assert.match(error.message, new RegExp(`bucket ${scheme}://${bucket}-nope does not exist`));
      assert.ok(error.hint);
      await expectCode(
        resolve(`${scheme}://${bucket}-nope/models/folder`, { env }),
        "ERR_HUBCACHE_NOT_FOUND",
      );
    });

    test("a folder is used in place: checked, returned as it is, nothing written", async () => {
      const cacheDir = path.join(await tempDir(), "never-created");
      const folder = `${scheme}://${bucket}/uncompressed/movenet`;
      const store = (): { method: string; url: string }[] =>
        scheme === "s3" ? s3Proxy.requests : gcs.requests;
      const from = store().length;
      assert.equal(await resolve(folder, { cacheDir, env }), folder);
      assert.equal(await resolve(`${folder}/`, { cacheDir, env }), `${folder}/`);
      assert.equal(await resolve(`${scheme}://${bucket}`, { cacheDir, env }), `${scheme}://${bucket}`);
      await expectCode(
        resolve(`${scheme}://${bucket}/uncompressed/movenet-typo`, { cacheDir, env }),
        "ERR_HUBCACHE_NOT_FOUND",
      );
      await expectCode(resolve(folder, { cacheDir, env, offline: true }), "ERR_HUBCACHE_OFFLINE");
      await assert.rejects(fs.stat(cacheDir), { code: "ENOENT" });
      const sent = store().slice(from);
      assert.ok(sent.length > 0, "the folder was checked at the store");
      assert.deepEqual(
        sent.filter((r) => r.method !== "GET" && r.method !== "HEAD").map((r) => `${r.method} ${r.url}`),
        [],
        "nothing was written to the bucket",
      );
    });
  });
}

describe("UNCOMPRESSED mode", () => {
  const locations = (): Record<string, string> => ({
    s3: `s3://${bucket}/uncompressed/movenet`,
    gs: `gs://${bucket}/uncompressed/movenet`,
    http: `${web.origin}/uncompressed/movenet`,
  });

  for (const kind of ["s3", "gs", "http"] as const) {
    test(`the host's 303 location (${kind}) is checked and returned; model files read remotely; nothing written locally`, async () => {
      const location = locations()[kind];
      const modelPath = `/uncompressed/${kind}/1`;
      hub.add(modelPath, { archive: Buffer.alloc(0), uncompressedLocation: location });
      const tmp = await tempDir("uncompressed-tmp-");
      const localEnv = { ...env, TMPDIR: tmp, TFHUB_MODEL_LOAD_FORMAT: "UNCOMPRESSED" };
      const resolved = await resolve(hub.handle(modelPath), { env: localEnv });
      assert.equal(resolved, location);
      const storage = await openStorage(resolved, { env: localEnv });
      const modelJson = await buffer((await storage.read("model.json")).body);
      assert.deepEqual(modelJson, await fs.readFile(path.join(tfjsSource, "model.json")));
      const shard = await storage.read("group1-shard1of1.bin", { start: 0, end: 15 });
      assert.deepEqual(
        await buffer(shard.body),
        (await fs.readFile(path.join(tfjsSource, "group1-shard1of1.bin"))).subarray(0, 16),
      );
      assert.deepEqual(await fs.readdir(tmp), [], "no cache dir, no temp files");
      assert.equal(hub.downloads().length, 0);
    });
  }

  test("a 303 to a location that does not exist is ERR_HUBCACHE_NOT_FOUND, as TF Hub's PathResolver", async () => {
    hub.add("/uncompressed/dangling/1", {
      archive: Buffer.alloc(0),
      uncompressedLocation: `s3://${bucket}/uncompressed/nothing-here`,
    });
    const error = await expectCode(
      resolve(hub.handle("/uncompressed/dangling/1"), { env, loadFormat: "UNCOMPRESSED" }),
      "ERR_HUBCACHE_NOT_FOUND",
    );
    assert.match(error.message, /nothing-here does not exist/);
    assert.match(error.hint ?? "", /TFHUB_MODEL_LOAD_FORMAT/);
  });
});

describe("load()'s model sources read object storage through the storage layer", () => {
  test("a TF.js folder on s3:// and gs://, and a TF.js model cached in a bucket, are read in place", async () => {
    for (const scheme of ["s3", "gs"]) {
      const info = await modelInfo(`${scheme}://${bucket}/uncompressed/movenet`, { env });
      assert.equal(info.kind, "graph-model");
      assert.equal(info.weights.files, 1);
    }
    hub.add("/google/tfjs-model/bucketed/1", { archive: await tarGz(tfjsSource) });
    const handle = hub.handle("/google/tfjs-model/bucketed/1");
    const info = await modelInfo(handle, { env: { ...env, TFHUB_CACHE_DIR: `s3://${bucket}/load-cache` } });
    assert.equal(info.kind, "graph-model");
    assert.equal(info.location, `s3://${bucket}/load-cache/${entryPaths("/x", handle).hash}`);
  });
});

describe("credentials, endpoints and SDKs", () => {
  test("with no credentials anywhere, reads go unsigned (public buckets)", async () => {
    const anonymous = { ...AWS_ISOLATION, AWS_ENDPOINT_URL_S3: s3Proxy.endpoint, AWS_REGION: "us-east-1" };
    const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
    delete process.env.AWS_ACCESS_KEY_ID;
    delete process.env.AWS_SECRET_ACCESS_KEY;
    try {
      const from = s3Proxy.requests.length;
      const storage = await openStorage(`s3://${bucket}/uncompressed/movenet`, { env: anonymous });
      const bytes = await buffer((await storage.read("model.json")).body);
      assert.deepEqual(bytes, await fs.readFile(path.join(tfjsSource, "model.json")));
      const sent = s3Proxy.requests.slice(from);
      assert.ok(sent.length > 0);
      assert.ok(
        sent.every((r) => r.headers.authorization === undefined),
        "no Authorization header was sent",
      );
      // Writing still needs credentials, and says how to give them.
      const error = await expectCode(storage.write("x", "y"), "ERR_HUBCACHE_UNAUTHORIZED");
      assert.match(error.hint ?? "", /AWS_ACCESS_KEY_ID/);
    } finally {
      if (saved.id !== undefined) process.env.AWS_ACCESS_KEY_ID = saved.id;
      if (saved.secret !== undefined) process.env.AWS_SECRET_ACCESS_KEY = saved.secret;
    }
  });

  test("an endpoint nobody listens on is ERR_HUBCACHE_NETWORK naming the endpoint setting", async () => {
    const closed = await startPausingProxy("http://127.0.0.1:9");
    const endpoint = closed.endpoint;
    await closed.close();
    const error = await expectCode(
      resolve(`s3://${bucket}/models/saved.tar.gz`, { cacheDir: await tempDir(), env: s3Env(endpoint) }),
      "ERR_HUBCACHE_NETWORK",
    );
    assert.match(error.message, new RegExp(endpoint.replace(/\./g, "\\.")));
    assert.match(error.hint ?? "", /AWS_ENDPOINT_URL/);
  });

  test("a missing optional SDK is ERR_HUBCACHE_MISSING_DEPENDENCY with the npm install line", async () => {
    const name = "@hubcache-test/not-installed-sdk";
    // loadSdk comes from the sources here, so its error class is the sources' one: match on fields.
    const error = await loadSdk(name, () => import(name), "s3").then(
      () => assert.fail("expected a rejection"),
      (e: unknown) => e as { code?: string; message: string; hint?: string },
    );
    assert.equal(error.code, "ERR_HUBCACHE_MISSING_DEPENDENCY");
    assert.match(
      error.message,
      /s3:\/\/ locations need the optional package @hubcache-test\/not-installed-sdk/,
    );
    assert.match(error.hint ?? "", /npm install @hubcache-test\/not-installed-sdk/);
  });
});
