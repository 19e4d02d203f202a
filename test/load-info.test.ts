/** modelInfo() and the `hubcache info` / `hubcache load` commands, against the local hub. */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, promises as fs } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";
import { type ModelInfo, modelInfo } from "hubcache";
import { entryPaths } from "../src/cache/layout.js";
import { readTree, tempDir } from "./helpers/fixtures.js";
import { type LoadHub, startLoadHub } from "./helpers/load-hub.js";

/** Per-test limit: a hang fails the test instead of the run (generous: the machine is shared). */
const LIMIT = { timeout: 180_000 };

const BIN = path.resolve("bin/hubcache.js");
const run = promisify(execFile);
let hub: LoadHub;

before(async () => {
  hub = await startLoadHub();
});
after(() => hub.hub.close());

async function cli(args: string[], env: Record<string, string> = {}) {
  try {
    const { stdout, stderr } = await run(process.execPath, [BIN, ...args], {
      env: { ...process.env, TFHUB_DOWNLOAD_PROGRESS: "", ...env },
      timeout: 120_000,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe("modelInfo", () => {
  test(
    "graph model through the cache: signature inputs and outputs, weights, files and size",
    LIMIT,
    async () => {
      const cacheDir = await tempDir();
      const handle = hub.handle("movenet");
      const info = await modelInfo(handle, { cacheDir });
      const files = await fs.readdir(hub.movenetDir);
      const sizes = await Promise.all(
        files.map(async (f) => (await fs.stat(path.join(hub.movenetDir, f))).size),
      );
      assert.equal(info.kind, "graph-model");
      assert.equal(info.location, entryPaths(cacheDir, handle).dir);
      assert.equal(info.cacheEntry, entryPaths(cacheDir, handle).dir);
      assert.deepEqual(info.inputs, [{ name: "input:0", dtype: "int32", shape: [1, 192, 192, 3] }]);
      assert.deepEqual(info.outputs, [{ name: "Identity:0", dtype: "float32", shape: [1, 1, 17, 3] }]);
      assert.deepEqual(info.weights, { tensors: 180, files: 1, bytes: 4_650_216 });
      assert.equal(info.generatedBy, "https://tfhub.dev/google/movenet/singlepose/lightning/4");
      assert.deepEqual(info.files.map((f) => f.path).sort(), files.sort());
      assert.equal(
        info.totalBytes,
        sizes.reduce((a, b) => a + b, 0),
      );
    },
  );

  test("layers model: input layer shape and dtype, output layer", LIMIT, async () => {
    const info = await modelInfo(hub.handle("upscaler"), { cacheDir: await tempDir() });
    assert.equal(info.kind, "layers-model");
    assert.deepEqual(info.inputs, [{ name: "LR", dtype: "float32", shape: [null, null, null, 3] }]);
    assert.equal(info.outputs[0]?.name, "SR");
    assert.deepEqual(info.weights, { tensors: 24, files: 1, bytes: 888_300 });
  });

  test("a graph model without a signature: Placeholders in, unread nodes out", LIMIT, async () => {
    const dir = await tempDir();
    for (const name of await fs.readdir(hub.movenetDir)) {
      await fs.copyFile(path.join(hub.movenetDir, name), path.join(dir, name));
    }
    const file = path.join(dir, "model.json");
    const json = JSON.parse(await fs.readFile(file, "utf8")) as Record<string, unknown>;
    delete json.signature;
    await fs.writeFile(file, JSON.stringify(json));
    const info = await modelInfo(dir);
    assert.deepEqual(info.inputs, [{ name: "input", dtype: "int32", shape: [1, 192, 192, 3] }]);
    assert.deepEqual(
      info.outputs.map((o) => o.name),
      ["Identity"],
    );
  });

  test("a SavedModel is described as one, with what to do", LIMIT, async () => {
    const info = await modelInfo(hub.handle("savedModel"), { cacheDir: await tempDir() });
    assert.equal(info.kind, "saved-model");
    assert.ok(info.files.some((f) => f.path === "saved_model.pb"));
    assert.ok(info.files.some((f) => f.path === "variables/variables.index"));
    // Every file of the SavedModel, with its size, and nothing else.
    const byPath = (a: { path: string }, b: { path: string }): number => a.path.localeCompare(b.path);
    const expected = [...(await readTree(hub.savedModelDir))].map(([file, bytes]) => ({
      path: file,
      size: bytes.length,
    }));
    assert.deepEqual([...info.files].sort(byPath), expected.sort(byPath));
    assert.match(info.note ?? "", /tensorflowjs_converter/);
  });

  test("UNCOMPRESSED: described from the host, nothing written", LIMIT, async () => {
    const cacheDir = path.join(await tempDir(), "never-created");
    const downloads = hub.hub.downloads().length;
    const info = await modelInfo(hub.handle("movenet"), { cacheDir, loadFormat: "UNCOMPRESSED" });
    assert.equal(info.kind, "graph-model");
    assert.equal(info.location, `${hub.handle("movenet")}/?tfjs-format=file`);
    assert.deepEqual(info.files, [
      { path: "model.json", size: undefined },
      { path: "group1-shard1of1.bin", size: undefined },
    ]);
    assert.equal(info.totalBytes, undefined);
    assert.equal(existsSync(cacheDir), false);
    assert.equal(hub.hub.downloads().length, downloads, "no archive was downloaded");
  });
});

describe("hubcache info / load", () => {
  test("info --json", LIMIT, async () => {
    const cacheDir = await tempDir();
    const { code, stdout } = await cli(["info", "--json", "--cache-dir", cacheDir, hub.handle("movenet")]);
    assert.equal(code, 0);
    const [info] = JSON.parse(stdout) as ModelInfo[];
    assert.equal(info?.kind, "graph-model");
    assert.deepEqual(info?.inputs[0]?.shape, [1, 192, 192, 3]);
    assert.equal(info?.location, entryPaths(cacheDir, hub.handle("movenet")).dir);
  });

  test("info as text, and a failing handle exits 1 with a coded error", LIMIT, async () => {
    const cacheDir = await tempDir();
    const ok = await cli(["info", "--cache-dir", cacheDir, hub.handle("upscaler")]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^kind +TF\.js layers model/m);
    assert.match(ok.stdout, /^inputs +LR +float32 +\[\?,\?,\?,3\]$/m);
    assert.match(ok.stdout, /^size +880 KiB in 2 files$/m);
    const bad = await cli(["info", "--cache-dir", cacheDir, `${hub.hub.origin}/no/such/model/1`]);
    assert.equal(bad.code, 1);
    assert.equal(bad.stdout, "");
    assert.match(bad.stderr, /^error\[ERR_HUBCACHE_NOT_FOUND\]/);
  });

  test(
    "a local archive or a non-JSON file says what it is and what to do, not 'not valid JSON'",
    LIMIT,
    async () => {
      const dir = await tempDir();
      await fs.mkdir(path.join(dir, "m"));
      await fs.writeFile(path.join(dir, "m", "readme.txt"), "hi");
      await run("tar", ["-czf", path.join(dir, "model.tar.gz"), "-C", dir, "m"]);
      await run("tar", ["-cf", path.join(dir, "model.tar"), "-C", dir, "m"]);
      await fs.writeFile(path.join(dir, "weights.bin"), Buffer.from([1, 2, 3, 4]));
      for (const [file, what] of [
        [
          "model.tar.gz",
          /is a gzip archive, not a model folder: local paths are used in place, never unpacked/,
        ],
        ["model.tar", /is a tar archive, not a model folder/],
        ["weights.bin", /is a file that is not a TF\.js model\.json \(it is not JSON\)/],
      ] as const) {
        for (const command of ["info", "load"]) {
          const target = path.join(dir, file);
          const result = await cli(command === "load" ? [command, "--no-run", target] : [command, target]);
          assert.equal(result.code, 1, result.stderr);
          assert.match(result.stderr, /^error\[ERR_HUBCACHE_INVALID_MODEL\]: /);
          assert.match(result.stderr, what);
          assert.doesNotMatch(result.stderr, /not valid JSON|cached entry/);
          assert.match(result.stderr, /^ {2}hint: (Unpack it and pass the folder|Pass the model's folder)/m);
        }
      }
    },
  );

  test("a folder that holds an archive but no model.json says to unpack it", LIMIT, async () => {
    const dir = await tempDir();
    await fs.writeFile(path.join(dir, "model.tar.gz"), "not really");
    const info = await modelInfo(dir);
    assert.equal(info.kind, "unknown");
    assert.match(info.note ?? "", /has no model\.json.*it holds: model\.tar\.gz\./);
    assert.match(
      info.note ?? "",
      /It holds an archive, model\.tar\.gz, which hubcache does not unpack in place: unpack it/,
    );
    const load = await cli(["load", "--no-run", dir]);
    assert.equal(load.code, 1);
    assert.match(load.stderr, /^ {2}hint: It holds an archive, model\.tar\.gz/m);
  });

  test("a URL without a host is an invalid handle, not a network error", LIMIT, async () => {
    for (const command of ["resolve", "info"]) {
      const result = await cli([command, "https://"]);
      assert.equal(result.code, 1);
      assert.match(
        result.stderr,
        /^error\[ERR_HUBCACHE_INVALID_HANDLE\]: "https:\/\/" is not a model URL: it names no host\.$/m,
      );
      assert.match(result.stderr, /^ {2}hint: Give the whole address/m);
    }
  });

  test("load --backend wasm runs the model once; a SavedModel gives the coded error", LIMIT, async () => {
    const cacheDir = await tempDir();
    const ok = await cli([
      "load",
      "--backend",
      "wasm",
      "--cache-dir",
      cacheDir,
      hub.handle("upscaler"),
      "--input-shape",
      "1,8,8,3",
    ]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^loaded +Functional on wasm/m);
    assert.match(ok.stdout, /outputs \[1,16,16,3\]/);
    const saved = await cli(["load", "--backend", "wasm", "--cache-dir", cacheDir, hub.handle("savedModel")]);
    assert.equal(saved.code, 1);
    assert.match(saved.stderr, /^error\[ERR_HUBCACHE_SAVED_MODEL\]/);
    assert.match(saved.stderr, /hint: .*tensorflowjs_converter/);
  });
});
