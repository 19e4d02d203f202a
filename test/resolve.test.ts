import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { type HubcacheEvent, resolve } from "hubcache";
import { entryPaths } from "../src/cache/layout.js";
import { type HubServer, startHubServer } from "./helpers/hub-server.js";
import { worldReadableCli } from "./helpers/runtime-copy.js";
import {
  movenetModelDir,
  readTree,
  savedModelDir,
  tarGz,
  tempDir,
  upscalerModelDir,
} from "./helpers/fixtures.js";
import { expectCode } from "./helpers/assertions.js";

let hub: HubServer;
const sources = new Map<string, string>();
const archives = new Map<string, Buffer>();

before(async () => {
  hub = await startHubServer();
  const movenet = await movenetModelDir();
  const upscaler = await upscalerModelDir();
  const savedModel = await savedModelDir(512 * 1024);
  sources.set("/google/tfjs-model/movenet/singlepose/lightning/4", movenet);
  sources.set("/upscaler/default/1", upscaler);
  sources.set("/google/savedmodel/1", savedModel);
  for (const [modelPath, dir] of sources) {
    const archive = await tarGz(dir);
    archives.set(modelPath, archive);
    hub.add(modelPath, { archive });
  }
  hub.add("/plain-tar/1", { archive: await tarGz(savedModel, { gzip: false }) });
});
after(() => hub.close());

async function listCache(cacheDir: string): Promise<string[]> {
  return (await fs.readdir(cacheDir)).sort();
}

describe("resolve, compressed mode", () => {
  for (const modelPath of [
    "/google/tfjs-model/movenet/singlepose/lightning/4",
    "/upscaler/default/1",
    "/google/savedmodel/1",
  ]) {
    test(`cold then warm: ${modelPath}`, async () => {
      const cacheDir = await tempDir();
      const handle = hub.handle(modelPath);
      const events: HubcacheEvent[] = [];
      const before = hub.requests.length;
      const dir = await resolve(handle, { cacheDir, onEvent: (e) => events.push(e) });
      const paths = entryPaths(cacheDir, handle);
      assert.equal(dir, paths.dir);
      // Exactly the archive's content.
      assert.deepEqual(await readTree(dir), await readTree(sources.get(modelPath) ?? ""));
      // Exactly TF Hub's layout, plus hubcache's record.
      assert.deepEqual(await listCache(cacheDir), [
        paths.hash,
        `${paths.hash}.descriptor.txt`,
        `${paths.hash}.hubcache.json`,
      ]);
      const descriptor = await fs.readFile(paths.descriptor, "utf8");
      assert.match(
        descriptor,
        new RegExp(
          `^Module: ${handle.replace(/[.?]/g, "\\$&")}\\nDownload Time: \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d(\\.\\d{6})?\\nDownloader Hostname: .+ \\(PID:${process.pid}\\)$`,
        ),
      );
      // One protocol request, one redirect to signed storage.
      const made = hub.requests.slice(before).map((r) => r.url);
      const param = modelPath.includes("tfjs-model") ? "tfjs-format" : "tf-hub-format";
      assert.equal(made[0], `${modelPath}?${param}=compressed`);
      assert.match(made[1] ?? "", /^\/storage\/.*X-Goog-Signature=/);
      assert.equal(made.length, 2);
      const last = events.filter((e) => e.type === "progress").at(-1);
      assert.ok(last?.type === "progress" && last.done, "a last progress event with done: true");
      const archiveBytes = archives.get(modelPath)?.length;
      assert.equal(last.downloadedBytes, archiveBytes);
      assert.equal(last.totalBytes, archiveBytes);
      const treeBytes = [...(await readTree(dir)).values()].reduce((sum, b) => sum + b.length, 0);
      assert.ok(last.extractedBytes >= treeBytes, "extracted bytes cover every file");
      assert.ok(last.files >= (await readTree(dir)).size, "every file was counted");
      assert.ok(events.some((e) => e.type === "published"));

      // Warm: same path, no request, nothing written.
      const stampOf = async (): Promise<string> =>
        JSON.stringify(
          await Promise.all(
            (await listCache(cacheDir)).map(async (n) => {
              const s = await fs.stat(path.join(cacheDir, n));
              return [n, s.mtimeMs, s.ctimeMs, s.ino];
            }),
          ),
        );
      const stamp = await stampOf();
      const warmEvents: HubcacheEvent[] = [];
      assert.equal(await resolve(handle, { cacheDir, onEvent: (e) => warmEvents.push(e) }), dir);
      assert.equal(hub.requests.length, before + 2);
      assert.deepEqual(warmEvents, [{ type: "cache-hit", handle, path: dir, writer: "hubcache" }]);
      assert.equal(await stampOf(), stamp);
      assert.deepEqual(await listCache(cacheDir), [
        paths.hash,
        `${paths.hash}.descriptor.txt`,
        `${paths.hash}.hubcache.json`,
      ]);
    });
  }

  test("a plain (uncompressed) tar is detected from its bytes", async () => {
    const cacheDir = await tempDir();
    const dir = await resolve(hub.handle("/plain-tar/1"), { cacheDir });
    assert.deepEqual(await readTree(dir), await readTree(sources.get("/google/savedmodel/1") ?? ""));
  });

  test("the cache dir comes from TFHUB_CACHE_DIR, else --tfhub_cache_dir, else TMPDIR/tfhub_modules", async () => {
    const envDir = await tempDir();
    const flagDir = await tempDir();
    const tmp = await tempDir();
    const handle = hub.handle("/upscaler/default/1");
    const hash = entryPaths("/", handle).hash;
    const model = await readTree(sources.get("/upscaler/default/1") ?? "");
    assert.equal(
      await resolve(handle, { env: { TFHUB_CACHE_DIR: envDir }, flags: { tfhub_cache_dir: flagDir } }),
      path.join(envDir, hash),
    );
    assert.deepEqual(await readTree(path.join(envDir, hash)), model);
    assert.deepEqual(await listCache(flagDir), [], "the flag lost to TFHUB_CACHE_DIR");
    assert.equal(
      await resolve(handle, { env: { TFHUB_CACHE_DIR: "" }, flags: { tfhub_cache_dir: flagDir } }),
      path.join(flagDir, hash),
    );
    assert.deepEqual(await readTree(path.join(flagDir, hash)), model);
    assert.equal(
      await resolve(handle, { env: { TMPDIR: tmp }, flags: {} }),
      path.join(tmp, "tfhub_modules", hash),
    );
    assert.deepEqual(await readTree(path.join(tmp, "tfhub_modules", hash)), model);
  });

  test("a partly deleted entry is detected and downloaded again", async () => {
    const cacheDir = await tempDir();
    const handle = hub.handle("/google/savedmodel/1");
    const dir = await resolve(handle, { cacheDir });
    await fs.rm(path.join(dir, "variables", "variables.data-00000-of-00001"));
    const downloads = hub.downloads().length;
    const events: HubcacheEvent[] = [];
    assert.equal(await resolve(handle, { cacheDir, onEvent: (e) => events.push(e) }), dir);
    assert.equal(hub.downloads().length, downloads + 1);
    assert.ok(events.some((e) => e.type === "cache-incomplete" && /variables\.data/.test(e.reason)));
    assert.deepEqual(await readTree(dir), await readTree(sources.get("/google/savedmodel/1") ?? ""));
  });

  test("a truncated file in an entry is detected too", async () => {
    const cacheDir = await tempDir();
    const handle = hub.handle("/upscaler/default/1");
    const dir = await resolve(handle, { cacheDir });
    await fs.truncate(path.join(dir, "group1-shard1of1.bin"), 100);
    const downloads = hub.downloads().length;
    const events: HubcacheEvent[] = [];
    assert.equal(await resolve(handle, { cacheDir, onEvent: (e) => events.push(e) }), dir);
    assert.equal(hub.downloads().length, downloads + 1);
    assert.ok(
      events.some((e) => e.type === "cache-incomplete" && /group1-shard1of1\.bin/.test(e.reason)),
      "the truncated file is named",
    );
    assert.deepEqual(await readTree(dir), await readTree(sources.get("/upscaler/default/1") ?? ""));
  });

  test("an entry written by Python tensorflow_hub (no hubcache record) is a hit when non-empty", async () => {
    const cacheDir = await tempDir();
    const handle = hub.handle("/some/python/model/1");
    const paths = entryPaths(cacheDir, handle);
    await fs.mkdir(path.join(paths.dir, "variables"), { recursive: true });
    await fs.writeFile(path.join(paths.dir, "saved_model.pb"), "pb");
    await fs.writeFile(paths.descriptor, "Module: x");
    const events: HubcacheEvent[] = [];
    const before = hub.requests.length;
    assert.equal(await resolve(handle, { cacheDir, onEvent: (e) => events.push(e) }), paths.dir);
    assert.equal(hub.requests.length, before);
    assert.deepEqual(events, [{ type: "cache-hit", handle, path: paths.dir, writer: "other" }]);
  });

  test("an empty entry dir is a miss and is replaced", async () => {
    const cacheDir = await tempDir();
    const handle = hub.handle("/upscaler/default/1");
    const paths = entryPaths(cacheDir, handle);
    await fs.mkdir(paths.dir);
    const downloads = hub.downloads().length;
    assert.equal(await resolve(handle, { cacheDir }), paths.dir);
    assert.deepEqual((await fs.readdir(paths.dir)).sort(), ["group1-shard1of1.bin", "model.json"]);
    assert.deepEqual(await readTree(paths.dir), await readTree(sources.get("/upscaler/default/1") ?? ""));
    assert.equal(hub.downloads().length, downloads + 1);
  });

  test("a hubcache record left from another download does not vouch for a foreign directory", async () => {
    const cacheDir = await tempDir();
    const handle = hub.handle("/upscaler/default/1");
    const paths = entryPaths(cacheDir, handle);
    await resolve(handle, { cacheDir });
    // Python replaces the entry with its own copy (new inode): hubcache must treat it as Python's.
    await fs.rm(paths.dir, { recursive: true });
    await fs.mkdir(paths.dir);
    await fs.writeFile(path.join(paths.dir, "model.json"), "{}");
    const events: HubcacheEvent[] = [];
    const before = hub.requests.length;
    assert.equal(await resolve(handle, { cacheDir, onEvent: (e) => events.push(e) }), paths.dir);
    assert.deepEqual(events, [{ type: "cache-hit", handle, path: paths.dir, writer: "other" }]);
    assert.equal(hub.requests.length, before);
    assert.deepEqual(
      await readTree(paths.dir),
      new Map([["model.json", Buffer.from("{}")]]),
      "left as it is",
    );
  });
});

describe("offline mode", () => {
  test("a cached handle resolves with no request; a missing one fails at once naming the handle", async () => {
    const cacheDir = await tempDir();
    const handle = hub.handle("/upscaler/default/1");
    const dir = await resolve(handle, { cacheDir });
    const cached = await listCache(cacheDir);
    const before = hub.requests.length;
    assert.equal(await resolve(handle, { cacheDir, offline: true }), dir);
    assert.equal(await resolve(handle, { cacheDir, env: { HUBCACHE_OFFLINE: "1" } }), dir);
    const missing = hub.handle("/google/savedmodel/1");
    const error = await expectCode(resolve(missing, { cacheDir, offline: true }), "ERR_HUBCACHE_OFFLINE");
    assert.match(error.message, /offline/i);
    assert.ok(error.message.includes(missing));
    await expectCode(
      resolve(missing, { cacheDir, env: { HUBCACHE_OFFLINE: "true" } }),
      "ERR_HUBCACHE_OFFLINE",
    );
    assert.equal(hub.requests.length, before);
    assert.deepEqual(await listCache(cacheDir), cached, "offline wrote nothing: no lock, no temp dir");
  });
});

describe("errors leave no trace", () => {
  test("an unknown model is ERR_HUBCACHE_NOT_FOUND and the cache holds nothing", async () => {
    const cacheDir = await tempDir();
    const error = await expectCode(
      resolve(hub.handle("/no/such/model/1"), { cacheDir }),
      "ERR_HUBCACHE_NOT_FOUND",
    );
    assert.equal(error.status, 404);
    assert.ok(error.hint);
    assert.deepEqual(await listCache(cacheDir), []);
  });

  test("a missing local path is ERR_HUBCACHE_NOT_FOUND; an existing one resolves to itself", async () => {
    const dir = await tempDir();
    assert.equal(await resolve(dir), dir);
    assert.equal(await resolve(`file://${dir}`), dir);
    await expectCode(resolve(path.join(dir, "nope")), "ERR_HUBCACHE_NOT_FOUND");
  });
});

describe("read-only cache", () => {
  test("an unprivileged user gets hits from a cache it cannot write; a miss says what to set", async (t) => {
    if (process.getuid?.() !== 0) {
      t.skip("needs root to switch to an unprivileged user");
      return;
    }
    const cacheDir = await tempDir();
    await fs.chmod(cacheDir, 0o755);
    const handle = hub.handle("/google/tfjs-model/movenet/singlepose/lightning/4");
    const dir = await resolve(handle, { cacheDir });
    execFileSync("chmod", ["-R", "a+rX", cacheDir]);
    const snapshot = await listCache(cacheDir);
    const before = hub.requests.length;
    const cli = await worldReadableCli();
    const asNobody = (...args: string[]): ReturnType<typeof spawnSync> =>
      spawnSync(
        "setpriv",
        ["--reuid=65534", "--regid=65534", "--clear-groups", process.execPath, cli, ...args],
        {
          encoding: "utf8",
          env: { ...process.env, TFHUB_CACHE_DIR: cacheDir, HOME: os.tmpdir() },
        },
      );
    const hit = asNobody("resolve", handle);
    assert.equal(hit.status, 0, String(hit.stderr));
    assert.equal(hit.stdout, `${dir}\n`);
    assert.equal(hub.requests.length, before);
    assert.deepEqual(await listCache(cacheDir), snapshot);

    const miss = asNobody("resolve", hub.handle("/upscaler/default/1"));
    assert.equal(miss.status, 1);
    assert.equal(miss.stdout, "");
    assert.match(String(miss.stderr), /^error\[ERR_HUBCACHE_NOT_WRITABLE\]: .*not writable/m);
    assert.match(String(miss.stderr), /hint: .*TFHUB_CACHE_DIR/);
    assert.deepEqual(await listCache(cacheDir), snapshot);
  });
});
