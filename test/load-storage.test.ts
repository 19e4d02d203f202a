/**
 * load() and modelInfo() reading models straight from object storage (real S3-protocol and GCS
 * JSON API servers): the UNCOMPRESSED location a host names, gs:// and s3:// folders, and a cache
 * dir in a bucket. Same outputs as TF.js loading the same files from disk, weights read from the
 * bucket (whole or streamed), nothing written locally; SavedModels there get the clear error.
 */
import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import * as converter from "@tensorflow/tfjs-converter";
import { cacheIOHandler, load, modelInfo, openStorage } from "hubcache";
import { entryPaths } from "../src/cache/layout.js";
import { movenetModelDir, readTree, savedModelDir, tarGz, tempDir } from "./helpers/fixtures.js";
import type { GcsFake } from "./helpers/gcs-fake.js";
import { type HubServer, startHubServer } from "./helpers/hub-server.js";
import { AWS_ISOLATION, type TestStores, startTestStores, uniqueBucket } from "./helpers/object-stores.js";
import type { PausingProxy } from "./helpers/pausing-proxy.js";
import { input, maxAbsDiff, run, useBackend, weightValues } from "./helpers/tfjs.js";
import { expectCode } from "./helpers/assertions.js";

Object.assign(process.env, AWS_ISOLATION);

const LIMIT = { timeout: 180_000 };
const bucket = uniqueBucket();
let stores: TestStores;
let s3Proxy: PausingProxy;
let gcs: GcsFake;
let hub: HubServer;
let env: Record<string, string>;
let movenet: string;
let reference: converter.GraphModel;

before(async () => {
  await useBackend("cpu");
  stores = await startTestStores(bucket);
  ({ s3Proxy, gcs, env } = stores);
  hub = await startHubServer();
  movenet = await movenetModelDir();
  const saved = await savedModelDir(16 * 1024);
  for (const scheme of ["s3", "gs"]) {
    for (const [folder, dir] of [
      ["movenet", movenet],
      ["saved", saved],
    ] as const) {
      const storage = await openStorage(`${scheme}://${bucket}/models/${folder}`, { env });
      for (const [rel, bytes] of await readTree(dir)) await storage.write(rel, bytes);
    }
  }
  reference = await converter.loadGraphModel(cacheIOHandler(movenet));
});
after(async () => {
  reference.dispose();
  await Promise.all([stores.close(), hub.close()]);
});

/** The object keys a store was asked for since `from` (GET requests only). */
function objectReads(scheme: "s3" | "gs", from: number): string[] {
  const requests = scheme === "s3" ? s3Proxy.requests : gcs.requests;
  return requests
    .slice(from)
    .filter((r) => r.method === "GET")
    .map((r) => decodeURIComponent(r.url));
}
const requestCount = (scheme: "s3" | "gs"): number =>
  scheme === "s3" ? s3Proxy.requests.length : gcs.requests.length;

for (const scheme of ["s3", "gs"] as const) {
  describe(`load() from ${scheme}://`, () => {
    for (const streamWeights of [false, true]) {
      test(
        `UNCOMPRESSED: the host's 303 location is loaded from the bucket${streamWeights ? " (weights streamed)" : ""}; same outputs as from disk; nothing written`,
        LIMIT,
        async () => {
          const modelPath = `/google/movenet-${scheme}-${String(streamWeights)}/1`;
          hub.add(modelPath, {
            archive: Buffer.alloc(0),
            uncompressedLocation: `${scheme}://${bucket}/models/movenet`,
          });
          const tmp = await tempDir("load-storage-tmp-");
          const cacheDir = path.join(tmp, "cache-never-created");
          const localEnv = { ...env, TMPDIR: tmp, TFHUB_CACHE_DIR: cacheDir };
          const from = requestCount(scheme);
          const downloadsBefore = hub.downloads().length;
          const model = await load(hub.handle(modelPath), {
            env: localEnv,
            loadFormat: "UNCOMPRESSED",
            streamWeights,
          });
          assert.ok(model instanceof converter.GraphModel);
          const reads = objectReads(scheme, from);
          assert.ok(
            reads.some((url) => url.includes("models/movenet/model.json")),
            reads.join("\n"),
          );
          assert.ok(
            reads.some((url) => url.includes("models/movenet/group1-shard1of1.bin")),
            "the weights came from the bucket",
          );
          assert.deepEqual(await weightValues(model), await weightValues(reference), "bit for bit");
          const x = input([1, 192, 192, 3], "int32", 255);
          const diff = maxAbsDiff(await run(model, x), await run(reference, x));
          assert.ok(diff <= 1e-5, `max diff ${diff}`);
          x.dispose();
          model.dispose();
          assert.deepEqual(await fs.readdir(tmp), [], "no cache dir, no temp files");
          assert.equal(hub.downloads().length, downloadsBefore, "no archive was downloaded");
        },
      );
    }

    test("a TF.js folder handle (gs:// or s3://) is loaded in place", LIMIT, async () => {
      const from = requestCount(scheme);
      const downloadsBefore = hub.downloads().length;
      const model = await load(`${scheme}://${bucket}/models/movenet`, { env });
      assert.deepEqual(await weightValues(model), await weightValues(reference));
      model.dispose();
      const requests = (scheme === "s3" ? s3Proxy.requests : gcs.requests).slice(from);
      assert.ok(
        requests.some((r) => decodeURIComponent(r.url).includes("models/movenet/group1-shard1of1.bin")),
        "the weights came from the bucket",
      );
      const writes = requests.filter((r) => r.method !== "GET" && r.method !== "HEAD");
      assert.deepEqual(
        writes.map((r) => `${r.method} ${r.url}`),
        [],
        "nothing was written to the bucket",
      );
      assert.equal(hub.downloads().length, downloadsBefore);
    });

    test(
      "a SavedModel in the bucket is ERR_HUBCACHE_SAVED_MODEL (folder handle and UNCOMPRESSED location); info says saved-model",
      LIMIT,
      async () => {
        const folder = `${scheme}://${bucket}/models/saved`;
        const direct = await expectCode(load(folder, { env }), "ERR_HUBCACHE_SAVED_MODEL");
        assert.match(direct.message, /TensorFlow SavedModel \(saved_model\.pb\)/);
        assert.match(direct.message, new RegExp(`It is at ${folder.replace(/[.]/g, "\\.")}`));
        assert.match(direct.hint ?? "", /tensorflowjs_converter/);

        const modelPath = `/google/saved-${scheme}/1`;
        hub.add(modelPath, { archive: Buffer.alloc(0), uncompressedLocation: folder });
        await expectCode(
          load(hub.handle(modelPath), { env, loadFormat: "UNCOMPRESSED" }),
          "ERR_HUBCACHE_SAVED_MODEL",
        );
        const info = await modelInfo(hub.handle(modelPath), { env, loadFormat: "UNCOMPRESSED" });
        assert.equal(info.kind, "saved-model");
        assert.equal(info.location, folder);
      },
    );

    test(
      "a SavedModel cached in a bucket cache dir is ERR_HUBCACHE_SAVED_MODEL naming the entry",
      LIMIT,
      async () => {
        const modelPath = `/google/saved-cached-${scheme}/1`;
        hub.add(modelPath, { archive: await tarGz(await savedModelDir(8 * 1024)) });
        const cacheDir = `${scheme}://${bucket}/cache`;
        const handle = hub.handle(modelPath);
        const error = await expectCode(
          load(handle, { env: { ...env, TFHUB_CACHE_DIR: cacheDir } }),
          "ERR_HUBCACHE_SAVED_MODEL",
        );
        assert.match(error.message, new RegExp(`${cacheDir}/${entryPaths("/x", handle).hash}`));
      },
    );
  });
}
