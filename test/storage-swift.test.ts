// The same conformance suite, and what only a signature-checking server can show, against
// OpenStack Swift's S3 API (see test/helpers/swift.ts for where the server comes from).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { openStorage, resolve } from "hubcache";
import { entryPaths } from "../src/cache/layout.js";
import { readTree, savedModelDir, tarGz, tempDir } from "./helpers/fixtures.js";
import { type HubServer, startHubServer } from "./helpers/hub-server.js";
import { AWS_ISOLATION, createS3Bucket, s3Env, uniqueBucket } from "./helpers/object-stores.js";
import { storageConformance } from "./helpers/storage-conformance.js";
import { openStorage as openInternalStorage } from "../src/storage/open.js";
import { type SwiftServer, startSwift } from "./helpers/swift.js";
import { expectCode } from "./helpers/assertions.js";

Object.assign(process.env, AWS_ISOLATION);

const swift: SwiftServer = await startSwift();
const skip = "skip" in swift ? swift.skip : false;
const endpoint = "endpoint" in swift ? swift.endpoint : "http://127.0.0.1:1";
const bucket = uniqueBucket();
let counter = 0;

before(async () => {
  if (!skip) await createS3Bucket(endpoint, bucket);
});
after(async () => {
  if (!("skip" in swift)) await swift.stop();
});

describe("OpenStack Swift s3api", { skip }, () => {
  storageConformance("OpenStack Swift s3api", {
    open: () => openInternalStorage(`s3://${bucket}/root-${++counter}`, { env: s3Env(endpoint) }),
    createOnly: "rejected",
  });

  test("a wrong secret fails at once: ERR_HUBCACHE_UNAUTHORIZED naming the credentials", async () => {
    const env = s3Env(endpoint, { key: "test:tester", secret: "not-the-secret" });
    const storage = await openStorage(`s3://${bucket}/x`, { env });
    const error = await expectCode(storage.read("model.json"), "ERR_HUBCACHE_UNAUTHORIZED");
    assert.match(error.message, /SignatureDoesNotMatch/);
    assert.match(error.hint ?? "", /AWS_ACCESS_KEY_ID/);
    // Through resolve too, with the cache on the bucket.
    await expectCode(
      resolve("http://127.0.0.1:9/never/fetched", { cacheDir: `s3://${bucket}/cache`, env }),
      "ERR_HUBCACHE_UNAUTHORIZED",
    );
  });

  test("an unknown access key is refused the same way", async () => {
    const storage = await openStorage(`s3://${bucket}`, {
      env: s3Env(endpoint, { key: "nobody:x", secret: "y" }),
    });
    await expectCode(
      storage.stat("a").then(() => storage.read("a")),
      "ERR_HUBCACHE_UNAUTHORIZED",
    );
  });

  test("a missing bucket fails at once: ERR_HUBCACHE_NOT_FOUND naming the bucket and endpoint", async () => {
    const storage = await openStorage(`s3://${bucket}-missing/models`, { env: s3Env(endpoint) });
    const error = await expectCode(storage.read("m.tar.gz"), "ERR_HUBCACHE_NOT_FOUND");
    assert.match(error.message, new RegExp(`bucket s3://${bucket}-missing does not exist at ${endpoint}`));
    assert.match(error.hint ?? "", /AWS_ENDPOINT_URL/);
  });

  describe("a cache dir on Swift (no create-only writes: write-then-verify locks)", () => {
    let hub: HubServer;
    let source: string;
    before(async () => {
      hub = await startHubServer();
      source = await savedModelDir(64 * 1024);
      hub.add("/swift/model/1", { archive: await tarGz(source) });
    });
    after(() => hub.close());

    test("cold resolve publishes the entry; warm resolve is a hit without the hub", async () => {
      const env = { ...s3Env(endpoint), HUBCACHE_OFFLINE: "" };
      const cacheDir = `s3://${bucket}/cache-${++counter}`;
      const handle = hub.handle("/swift/model/1");
      const location = await resolve(handle, { cacheDir, env });
      assert.equal(location, `${cacheDir}/${entryPaths("/c", handle).hash}`);
      assert.equal(await resolve(handle, { cacheDir, env, offline: true }), location);
      assert.equal(hub.downloads().length, 1);
      // What is in the bucket is exactly the model.
      const local = await tempDir();
      const storage = await openStorage(location, { env });
      const { listTree, downloadTree } = await import("../src/storage/transfer.js");
      await downloadTree(storage, "", await listTree(storage, ""), local);
      assert.deepEqual(await readTree(local), await readTree(source));
    });
  });
});
