/**
 * load() on the wasm backend against a local hub serving real TF.js models: same outputs as TF.js
 * loading the same files itself, downloaded once, UNCOMPRESSED reads that write nothing, and clear
 * errors for SavedModels and broken models.
 */
import assert from "node:assert/strict";
import { existsSync, promises as fs } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import * as converter from "@tensorflow/tfjs-converter";
import * as layers from "@tensorflow/tfjs-layers";
import { type HubcacheEvent, type ObjectReader, cacheIOHandler, hubFetch, load, resolve } from "hubcache";
import { entryPaths } from "../src/cache/layout.js";
import { readTree, tempDir } from "./helpers/fixtures.js";
import { startFlakyHost } from "./helpers/flaky-host.js";
import { type LoadHub, PATHS, startLoadHub } from "./helpers/load-hub.js";
import type { tf } from "./helpers/tfjs.js";
import { input, maxAbsDiff, run, useBackend } from "./helpers/tfjs.js";
import { expectCode } from "./helpers/assertions.js";

/** Per-test limit: a hang fails the test instead of the run (generous: the machine is shared). */
const LIMIT = { timeout: 180_000 };

let hub: LoadHub;
const MOVENET_INPUT = (): tf.Tensor => input([1, 192, 192, 3], "int32", 255);
const UPSCALER_INPUT = (): tf.Tensor => input([1, 16, 16, 3], "float32", 1);

before(async () => {
  await useBackend("wasm");
  hub = await startLoadHub();
});
after(() => hub.hub.close());

/** The reference: TF.js loading the same files from the same host with its own http loader. */
async function directMovenet(): Promise<converter.GraphModel> {
  return converter.loadGraphModel(hub.handle("movenet"), { fromTFHub: true });
}
async function directUpscaler(): Promise<layers.LayersModel> {
  return layers.loadLayersModel(`${hub.handle("upscaler")}/model.json?tfjs-format=file`);
}

const requestsDuring = async <T>(work: () => Promise<T>): Promise<{ value: T; urls: string[] }> => {
  const start = hub.hub.requests.length;
  const value = await work();
  return { value, urls: hub.hub.requests.slice(start).map((r) => r.url) };
};

describe("load, compressed mode (through the cache)", () => {
  test(
    "graph model: same outputs as TF.js's own loader; the second load makes no request",
    LIMIT,
    async () => {
      const cacheDir = await tempDir();
      const handle = hub.handle("movenet");
      const first = await requestsDuring(() => load(handle, { cacheDir }));
      assert.ok(first.value instanceof converter.GraphModel);
      assert.deepEqual(first.urls, [
        `${PATHS.movenet}?tfjs-format=compressed`,
        first.urls[1], // the signed storage hop
      ]);
      assert.match(first.urls[1] ?? "", /^\/storage\/.*X-Goog-Signature=/);

      const x = MOVENET_INPUT();
      const direct = await directMovenet();
      const expected = await run(direct, x);
      const got = await run(first.value, x);
      assert.equal(got.length, 1 * 1 * 17 * 3);
      assert.ok(maxAbsDiff(got, expected) <= 1e-5, `max diff ${maxAbsDiff(got, expected)}`);

      const second = await requestsDuring(() => load(handle, { cacheDir }));
      assert.deepEqual(second.urls, []);
      assert.ok(maxAbsDiff(await run(second.value, x), expected) <= 1e-5);
      for (const m of [first.value, second.value, direct]) m.dispose();
      x.dispose();
    },
  );

  test("layers model (Kaggle-style handle): same outputs; cached as a TF.js archive", LIMIT, async () => {
    const cacheDir = await tempDir();
    const handle = hub.handle("upscaler");
    const { value: model, urls } = await requestsDuring(() => load(handle, { cacheDir }));
    assert.ok(model instanceof layers.LayersModel);
    assert.equal(urls[0], `${PATHS.upscaler}?tfjs-format=compressed`);
    assert.deepEqual(
      await readTree(entryPaths(cacheDir, handle).dir),
      await readTree(hub.upscalerDir),
      "the entry holds exactly the TF.js model's files",
    );
    const x = UPSCALER_INPUT();
    const direct = await directUpscaler();
    const got = await run(model, x);
    assert.equal(got.length, 1 * 32 * 32 * 3);
    assert.ok(maxAbsDiff(got, await run(direct, x)) <= 1e-5);
    model.dispose();
    direct.dispose();
    x.dispose();
  });

  test("streamWeights gives the same graph model, and onLoadProgress ends at 1", LIMIT, async () => {
    const cacheDir = await tempDir();
    const progress: number[] = [];
    const model = await load(hub.handle("movenet"), {
      cacheDir,
      streamWeights: true,
      onLoadProgress: (f) => progress.push(f),
    });
    const direct = await directMovenet();
    const x = MOVENET_INPUT();
    assert.ok(maxAbsDiff(await run(model, x), await run(direct, x)) <= 1e-5);
    assert.equal(progress[0], 0);
    assert.equal(progress.at(-1), 1);
    model.dispose();
    direct.dispose();
    x.dispose();
  });

  test("streamWeights on a layers model loads it whole and says so", LIMIT, async () => {
    const events: HubcacheEvent[] = [];
    const model = await load(hub.handle("upscaler"), {
      cacheDir: await tempDir(),
      streamWeights: true,
      onEvent: (e) => events.push(e),
    });
    assert.ok(model instanceof layers.LayersModel);
    assert.ok(events.some((e) => e.type === "warning" && /graph models only/.test(e.message)));
    const direct = await directUpscaler();
    const x = UPSCALER_INPUT();
    assert.ok(maxAbsDiff(await run(model, x), await run(direct, x)) <= 1e-5, "the whole model loaded");
    model.dispose();
    direct.dispose();
    x.dispose();
  });

  test("model.json without `format`: the loader is chosen from the topology", LIMIT, async () => {
    const cacheDir = await tempDir();
    const graph = await load(hub.handle("noFormatGraph"), { cacheDir });
    const keras = await load(hub.handle("noFormatLayers"), { cacheDir });
    assert.ok(graph instanceof converter.GraphModel);
    assert.ok(keras instanceof layers.LayersModel);
    graph.dispose();
    keras.dispose();
  });

  test("an archive with one wrapping folder loads", LIMIT, async () => {
    const cacheDir = await tempDir();
    const model = await load(hub.handle("wrapped"), { cacheDir });
    const direct = await directMovenet();
    const x = MOVENET_INPUT();
    assert.ok(maxAbsDiff(await run(model, x), await run(direct, x)) <= 1e-5);
    model.dispose();
    direct.dispose();
    x.dispose();
  });

  test("a local folder, and a path to the model's .json file, load in place", LIMIT, async () => {
    const files = await readTree(hub.upscalerDir);
    const cacheDir = path.join(await tempDir(), "never-created");
    const { value: fromDir, urls: dirUrls } = await requestsDuring(() => load(hub.upscalerDir, { cacheDir }));
    const { value: fromFile, urls: fileUrls } = await requestsDuring(() =>
      load(path.join(hub.upscalerDir, "model.json"), { cacheDir }),
    );
    assert.deepEqual([...dirUrls, ...fileUrls], [], "read from the folder, not the host");
    assert.equal(existsSync(cacheDir), false, "nothing cached");
    assert.deepEqual(await readTree(hub.upscalerDir), files, "the folder is left as it was");
    const direct = await directUpscaler();
    const x = UPSCALER_INPUT();
    const expected = await run(direct, x);
    assert.deepEqual(await run(fromDir, x), await run(fromFile, x));
    assert.ok(maxAbsDiff(await run(fromDir, x), expected) <= 1e-5);
    fromDir.dispose();
    fromFile.dispose();
    direct.dispose();
    x.dispose();
  });
});

describe("load, UNCOMPRESSED mode (read from the host, nothing written)", () => {
  for (const how of ["env", "option"] as const) {
    test(
      `TF.js handle via ${how === "env" ? "TFHUB_MODEL_LOAD_FORMAT" : "loadFormat"}: files read one by one`,
      LIMIT,
      async () => {
        const cacheDir = path.join(await tempDir(), "never-created");
        const options =
          how === "env"
            ? { cacheDir, env: { TFHUB_MODEL_LOAD_FORMAT: "UNCOMPRESSED" } }
            : { cacheDir, loadFormat: "UNCOMPRESSED" as const };
        const { value: model, urls } = await requestsDuring(() => load(hub.handle("movenet"), options));
        const fileReads = urls.filter((u) => !u.startsWith("/file-storage/"));
        assert.deepEqual(fileReads, [
          `${PATHS.movenet}/model.json?tfjs-format=file`,
          `${PATHS.movenet}/group1-shard1of1.bin?tfjs-format=file`,
        ]);
        assert.equal(urls.filter((u) => u.startsWith("/file-storage/")).length, 2, "each file redirected");
        assert.ok(!urls.some((u) => u.includes("compressed")));
        assert.equal(existsSync(cacheDir), false, "the cache dir must not be created");
        assert.equal(existsSync(path.dirname(cacheDir)), true);
        assert.deepEqual(await fs.readdir(path.dirname(cacheDir)), []);

        const direct = await directMovenet();
        const x = MOVENET_INPUT();
        assert.ok(maxAbsDiff(await run(model, x), await run(direct, x)) <= 1e-5);
        model.dispose();
        direct.dispose();
        x.dispose();
      },
    );
  }

  test("layers model, streamed graph model: same results remotely", LIMIT, async () => {
    const cacheDir = path.join(await tempDir(), "never-created");
    const keras = await load(hub.handle("upscaler"), { cacheDir, loadFormat: "UNCOMPRESSED" });
    const graph = await load(hub.handle("movenet"), {
      cacheDir,
      loadFormat: "UNCOMPRESSED",
      streamWeights: true,
    });
    const direct = await directUpscaler();
    const x = UPSCALER_INPUT();
    assert.ok(maxAbsDiff(await run(keras, x), await run(direct, x)) <= 1e-5);
    const directGraph = await directMovenet();
    const y = MOVENET_INPUT();
    assert.ok(maxAbsDiff(await run(graph, y), await run(directGraph, y)) <= 1e-5);
    assert.equal(existsSync(cacheDir), false);
    for (const m of [keras, graph, direct, directGraph]) m.dispose();
    x.dispose();
    y.dispose();
  });

  test("a non-TF.js handle whose 303 location is an http folder is read from there", LIMIT, async () => {
    const cacheDir = path.join(await tempDir(), "never-created");
    const { value: model, urls } = await requestsDuring(() =>
      load(hub.handle("located"), { cacheDir, loadFormat: "UNCOMPRESSED" }),
    );
    assert.deepEqual(urls, [
      `${PATHS.located}?tf-hub-format=uncompressed`,
      // resolve checks that the 303 location exists, as TF Hub's PathResolver does (a HEAD of model.json)
      `/static${PATHS.located}/model.json`,
      `/static${PATHS.located}/model.json`,
      `/static${PATHS.located}/group1-shard1of1.bin`,
    ]);
    assert.ok(model instanceof converter.GraphModel);
    assert.equal(existsSync(cacheDir), false);
    const direct = await directMovenet();
    const x = MOVENET_INPUT();
    assert.ok(maxAbsDiff(await run(model, x), await run(direct, x)) <= 1e-5);
    model.dispose();
    direct.dispose();
    x.dispose();
  });

  test("a missing or short weight file on the host is a clear error", LIMIT, async () => {
    const options = { cacheDir: await tempDir(), loadFormat: "UNCOMPRESSED" as const };
    const missing = await expectCode(load(hub.handle("missingShard"), options), "ERR_HUBCACHE_INVALID_MODEL");
    assert.match(missing.message, /group1-shard1of1\.bin/);
    const short = await expectCode(load(hub.handle("shortShard"), options), "ERR_HUBCACHE_INVALID_MODEL");
    assert.match(short.message, /887300 bytes, but model\.json describes 888300/);
  });

  test(
    "file reads get archive downloads' retries and resume: a 503 and a cut shard still load",
    LIMIT,
    async () => {
      const host = await startFlakyHost();
      try {
        const base = "/acme/tfjs-model/flaky/1";
        const json = await fs.readFile(path.join(hub.upscalerDir, "model.json"));
        const shard = await fs.readFile(path.join(hub.upscalerDir, "group1-shard1of1.bin"));
        host.route(`${base}/model.json`, [{ status: 503, headers: { "retry-after": "0" } }, { body: json }]);
        host.route(`${base}/group1-shard1of1.bin`, [
          { body: shard, ranges: true, cutAfter: 300_000 },
          { body: shard, ranges: true },
        ]);
        const events: HubcacheEvent[] = [];
        const cacheDir = path.join(await tempDir(), "never-created");
        const model = await load(host.url(base), {
          cacheDir,
          loadFormat: "UNCOMPRESSED",
          retryDelayMs: 10,
          onEvent: (e) => events.push(e),
        });
        assert.equal(host.requestsTo(`${base}/model.json`).length, 2);
        const shardRequests = host.requestsTo(`${base}/group1-shard1of1.bin`);
        assert.equal(shardRequests.length, 2);
        assert.equal(shardRequests[1]?.headers.range, "bytes=300000-");
        assert.ok(shardRequests.every((r) => r.url.endsWith("?tfjs-format=file")));
        assert.equal(events.filter((e) => e.type === "retry").length, 2);
        const direct = await directUpscaler();
        const x = UPSCALER_INPUT();
        assert.ok(maxAbsDiff(await run(model, x), await run(direct, x)) <= 1e-5);
        assert.equal(existsSync(cacheDir), false);
        model.dispose();
        direct.dispose();
        x.dispose();
      } finally {
        await host.close();
      }
    },
  );

  test("offline: fails at once, no request", LIMIT, async () => {
    const { urls } = await requestsDuring(() =>
      expectCode(
        load(hub.handle("movenet"), { loadFormat: "UNCOMPRESSED", offline: true }),
        "ERR_HUBCACHE_OFFLINE",
      ),
    );
    assert.deepEqual(urls, []);
  });
});

describe("load: SavedModels and broken models", () => {
  test(
    "a SavedModel fails with a coded error naming it, its cache folder and the converter; resolve still works",
    LIMIT,
    async () => {
      const cacheDir = await tempDir();
      const handle = hub.handle("savedModel");
      const error = await expectCode(load(handle, { cacheDir }), "ERR_HUBCACHE_SAVED_MODEL");
      const dir = entryPaths(cacheDir, handle).dir;
      assert.match(error.message, /TensorFlow SavedModel \(saved_model\.pb\)/);
      assert.ok(error.message.includes(dir), error.message);
      assert.match(error.hint ?? "", /tensorflowjs_converter --input_format=tf_saved_model/);
      assert.match(error.hint ?? "", /tfJs/);
      const { value: resolved, urls } = await requestsDuring(() => resolve(handle, { cacheDir }));
      assert.equal(resolved, dir);
      assert.deepEqual(urls, [], "the SavedModel load() fetched is a cache hit for resolve()");
      assert.deepEqual(await readTree(dir), await readTree(hub.savedModelDir));
    },
  );

  test(
    "a handle not recognised as TF.js loads with modelFormat 'tfjs'; by default it is what resolve() fetches",
    LIMIT,
    async () => {
      const handle = hub.handle("bothFormats");
      const autoCache = await tempDir();
      const auto = await requestsDuring(() =>
        expectCode(load(handle, { cacheDir: autoCache }), "ERR_HUBCACHE_SAVED_MODEL"),
      );
      assert.equal(auto.urls[0], `${PATHS.bothFormats}?tf-hub-format=compressed`);
      assert.match(auto.value.hint ?? "", /modelFormat: "tfjs"/);

      const { value: model, urls } = await requestsDuring(async () =>
        load(handle, { cacheDir: await tempDir(), modelFormat: "tfjs" }),
      );
      assert.equal(urls[0], `${PATHS.bothFormats}?tfjs-format=compressed`);
      assert.ok(model instanceof converter.GraphModel);
      const direct = await directMovenet();
      const x = MOVENET_INPUT();
      assert.ok(maxAbsDiff(await run(model, x), await run(direct, x)) <= 1e-5, "the TF.js archive's model");
      model.dispose();
      direct.dispose();
      x.dispose();
    },
  );

  test(
    "a weight file missing from the archive, or short, is a clear error naming the cache entry",
    LIMIT,
    async () => {
      const cacheDir = await tempDir();
      const missing = await expectCode(
        load(hub.handle("missingShard"), { cacheDir }),
        "ERR_HUBCACHE_INVALID_MODEL",
      );
      assert.match(missing.message, /lists the weight file group1-shard1of1\.bin/);
      assert.ok((missing.hint ?? "").includes(entryPaths(cacheDir, hub.handle("missingShard")).dir));
      const short = await expectCode(
        load(hub.handle("shortShard"), { cacheDir }),
        "ERR_HUBCACHE_INVALID_MODEL",
      );
      assert.match(short.message, /887300 bytes, but model\.json describes 888300/);
    },
  );

  test("weight paths that leave the model's folder are refused, on disk and on the host", LIMIT, async () => {
    const cacheDir = await tempDir();
    const onDisk = await expectCode(load(hub.handle("escape"), { cacheDir }), "ERR_HUBCACHE_INVALID_MODEL");
    assert.match(onDisk.message, /not a plain path inside the model's folder/);
    const { value: remote, urls } = await requestsDuring(() =>
      expectCode(
        load(hub.handle("escape"), { cacheDir, loadFormat: "UNCOMPRESSED" }),
        "ERR_HUBCACHE_INVALID_MODEL",
      ),
    );
    assert.match(remote.message, /not a plain path/);
    assert.ok(!urls.some((u) => u.includes("etc")), urls.join(" "));
  });

  test("a symlinked weight file pointing outside the folder is refused", LIMIT, async () => {
    const dir = await tempDir();
    await fs.copyFile(path.join(hub.upscalerDir, "model.json"), path.join(dir, "model.json"));
    const outside = await tempDir();
    await fs.copyFile(path.join(hub.upscalerDir, "group1-shard1of1.bin"), path.join(outside, "w.bin"));
    await fs.symlink(path.join(outside, "w.bin"), path.join(dir, "group1-shard1of1.bin"));
    const error = await expectCode(load(dir), "ERR_HUBCACHE_INVALID_MODEL");
    assert.match(error.message, /outside the model's folder/);
  });
});

describe("cacheIOHandler and hubFetch: TF.js's own loaders, served from the cache", () => {
  test("cacheIOHandler(resolve(handle)) with loadGraphModel", LIMIT, async () => {
    const cacheDir = await tempDir();
    const dir = await resolve(hub.handle("wrapped"), { cacheDir });
    const model = await converter.loadGraphModel(cacheIOHandler(dir));
    const direct = await directMovenet();
    const x = MOVENET_INPUT();
    assert.ok(maxAbsDiff(await run(model, x), await run(direct, x)) <= 1e-5);
    model.dispose();
    direct.dispose();
    x.dispose();
    const saved = await resolve(hub.handle("savedModel"), { cacheDir });
    await expectCode(converter.loadGraphModel(cacheIOHandler(saved)), "ERR_HUBCACHE_SAVED_MODEL");
  });

  test(
    "loadGraphModel(handle, {fromTFHub, fetchFunc: hubFetch()}): downloads once, then no request",
    LIMIT,
    async () => {
      const cacheDir = await tempDir();
      const fetchFunc = hubFetch({ cacheDir });
      const first = await requestsDuring(() =>
        converter.loadGraphModel(hub.handle("movenet"), { fromTFHub: true, fetchFunc }),
      );
      assert.deepEqual(first.urls.length, 2);
      assert.equal(first.urls[0], `${PATHS.movenet}?tfjs-format=compressed`);
      const second = await requestsDuring(() =>
        converter.loadGraphModel(hub.handle("movenet"), {
          fromTFHub: true,
          fetchFunc: hubFetch({ cacheDir }),
        }),
      );
      assert.deepEqual(second.urls, []);
      const direct = await directMovenet();
      const x = MOVENET_INPUT();
      const expected = await run(direct, x);
      assert.ok(maxAbsDiff(await run(first.value, x), expected) <= 1e-5);
      assert.ok(maxAbsDiff(await run(second.value, x), expected) <= 1e-5);
      for (const m of [first.value, second.value, direct]) m.dispose();
      x.dispose();
    },
  );

  test("hubFetch with loadLayersModel and streamWeights", LIMIT, async () => {
    const cacheDir = await tempDir();
    const keras = await layers.loadLayersModel(`${hub.handle("upscaler")}/model.json?tfjs-format=file`, {
      fetchFunc: hubFetch({ cacheDir }),
    });
    assert.ok(keras instanceof layers.LayersModel);
    const directKeras = await directUpscaler();
    const k = UPSCALER_INPUT();
    assert.ok(maxAbsDiff(await run(keras, k), await run(directKeras, k)) <= 1e-5);
    keras.dispose();
    directKeras.dispose();
    k.dispose();
    const graph = await converter.loadGraphModel(hub.handle("movenet"), {
      fromTFHub: true,
      streamWeights: true,
      fetchFunc: hubFetch({ cacheDir }),
    });
    const direct = await directMovenet();
    const x = MOVENET_INPUT();
    assert.ok(maxAbsDiff(await run(graph, x), await run(direct, x)) <= 1e-5);
    graph.dispose();
    direct.dispose();
    x.dispose();
  });

  test("hubFetch checks weight files that TF.js would take short or missing", LIMIT, async () => {
    const fetchFunc = hubFetch({ cacheDir: await tempDir() });
    const missing = await expectCode(
      converter.loadGraphModel(hub.handle("missingShard"), { fromTFHub: true, fetchFunc }),
      "ERR_HUBCACHE_INVALID_MODEL",
    );
    assert.match(missing.message, /group1-shard1of1\.bin/);
    const short = await expectCode(
      layers.loadLayersModel(`${hub.handle("shortShard")}/model.json?tfjs-format=file`, { fetchFunc }),
      "ERR_HUBCACHE_INVALID_MODEL",
    );
    assert.match(short.message, /887300 bytes/);
  });

  test("hubFetch passes other requests to the fallback fetch", LIMIT, async () => {
    const seen: string[] = [];
    const fetchFunc = hubFetch({
      cacheDir: await tempDir(),
      fallback: async (input) => {
        seen.push(input instanceof Request ? input.url : input.toString());
        return new Response("fallback");
      },
    });
    const answer = await fetchFunc("https://example.invalid/other.json");
    assert.equal(await answer.text(), "fallback");
    assert.deepEqual(seen, ["https://example.invalid/other.json"]);
  });
});

describe("load from an object store (the storage seam)", () => {
  test("gs:// folder read through an ObjectReader", LIMIT, async () => {
    const files = new Map<string, Uint8Array>();
    for (const name of await fs.readdir(hub.upscalerDir)) {
      files.set(`models/upscaler/${name}`, await fs.readFile(path.join(hub.upscalerDir, name)));
    }
    const asked: string[] = [];
    const reader: ObjectReader = {
      read: async (key) => {
        asked.push(key);
        return files.get(key);
      },
    };
    const model = await load("gs://bucket/models/upscaler", { openStore: () => reader });
    assert.deepEqual(asked, ["models/upscaler/model.json", "models/upscaler/group1-shard1of1.bin"]);
    const direct = await directUpscaler();
    const x = UPSCALER_INPUT();
    assert.ok(maxAbsDiff(await run(model, x), await run(direct, x)) <= 1e-5);
    model.dispose();
    direct.dispose();
    x.dispose();
    // Without openStore, gs:// and s3:// go through hubcache's storage layer (test/storage-*.test.ts);
    // here aimed at a closed local port, with credentials given, so nothing leaves the machine.
    const closedEndpoint = {
      AWS_ENDPOINT_URL_S3: "http://127.0.0.1:9",
      AWS_ACCESS_KEY_ID: "test",
      AWS_SECRET_ACCESS_KEY: "test",
      AWS_REGION: "us-east-1",
      AWS_EC2_METADATA_DISABLED: "true",
    };
    await expectCode(load("s3://bucket/models/upscaler", { env: closedEndpoint }), "ERR_HUBCACHE_NETWORK");
  });
});
