/**
 * What resolve says when the cache dir itself is the problem (issue 10): a dir that cannot be
 * created (under /proc, where Node 20's recursive mkdir spins forever) fails at once; a cache dir
 * that is a file, or under a file, says so; offline hints name the setting that chose the cache
 * dir; offline with an incomplete entry says incomplete, and which file. Through the library and
 * through the CLI (bin/hubcache.js, built dist/).
 */
import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { chooseCacheDirWithSource } from "../src/config.js";
import { resolve } from "../src/resolve.js";
import { resolveSettings } from "../src/settings.js";
import { expectCode } from "./helpers/assertions.js";
import { tarGz, tempDir, upscalerModelDir } from "./helpers/fixtures.js";
import { type HubServer, startHubServer } from "./helpers/hub-server.js";
import { type Finished, TEST_TIMEOUT_MS, startCli } from "./helpers/processes.js";

/** How long failing on a cache dir may take: at once, with room for a slow, shared machine. */
const BOUND_MS = 15_000;

let hub: HubServer;
let handle: string;

before(async () => {
  hub = await startHubServer();
  hub.add("/messages/model/1", { archive: await tarGz(await upscalerModelDir()) });
  handle = hub.handle("/messages/model/1");
});
after(() => hub.close());

/** `promise`, or a rejection after `ms`: an implementation that spins fails instead of hanging. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took more than ${ms} ms`)), ms);
    timer.unref();
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** `hubcache ...args`, killed (and failed) if it takes longer than BOUND_MS. */
async function cliWithin(args: string[]): Promise<Finished> {
  const running = startCli(args, { env: { HUBCACHE_RETRIES: "0" } });
  try {
    return await within(running.done, BOUND_MS, "hubcache");
  } finally {
    running.child.kill("SIGKILL"); // a CLI that spins must not outlive the test
  }
}

describe("a cache dir that cannot be created", () => {
  test("under /proc: ERR_HUBCACHE_NOT_WRITABLE naming the dir, at once, with no request", async () => {
    for (const cacheDir of ["/proc/hubcache-no-such-dir", "/proc/hubcache-no-such-dir/deeper"]) {
      const requests = hub.requests.length;
      const error = await within(
        expectCode(resolve(handle, { cacheDir, env: {}, flags: {} }), "ERR_HUBCACHE_NOT_WRITABLE", {
          described: true,
        }),
        BOUND_MS,
        `resolve into ${cacheDir}`,
      );
      assert.ok(error.message.includes(cacheDir), error.message);
      assert.match(error.message, /cannot be created/);
      assert.equal(hub.requests.length, requests, "nothing was downloaded");
    }
  });

  test("under /proc, through the CLI: exits 1 at once", { timeout: TEST_TIMEOUT_MS }, async () => {
    const result = await cliWithin(["resolve", "--cache-dir", "/proc/hubcache-no-such-dir", handle]);
    assert.equal(result.code, 1, result.stderr);
    assert.match(
      result.stderr,
      /error\[ERR_HUBCACHE_NOT_WRITABLE\]: The cache directory \/proc\/hubcache-no-such-dir /,
    );
    assert.match(result.stderr, /hint: .*chosen by --cache-dir/);
  });
});

describe("a cache dir that is a file", () => {
  test("says so, for the dir itself and for a parent, with a hint", async () => {
    const root = await tempDir("hubcache-messages-");
    const file = path.join(root, "cache");
    await fs.writeFile(file, "not a folder");
    const itself = await expectCode(
      resolve(handle, { cacheDir: file, env: {}, flags: {} }),
      "ERR_HUBCACHE_NOT_WRITABLE",
      { described: true },
    );
    assert.ok(itself.message.includes(`${file} is a file, not a directory`), itself.message);
    assert.match(itself.hint ?? "", /Move that file out of the way/);
    assert.match(itself.hint ?? "", /--cache-dir/);
    const below = path.join(file, "sub", "dir");
    const parent = await expectCode(
      resolve(handle, { env: { TFHUB_CACHE_DIR: below }, flags: {} }),
      "ERR_HUBCACHE_NOT_WRITABLE",
      { described: true },
    );
    assert.ok(parent.message.includes(below), parent.message);
    assert.ok(parent.message.includes(`${file} is a file, not a directory`), parent.message);
    assert.match(parent.hint ?? "", /chosen by TFHUB_CACHE_DIR/);
    assert.equal(await fs.readFile(file, "utf8"), "not a folder", "the file is left alone");
  });

  test("through the CLI", { timeout: TEST_TIMEOUT_MS }, async () => {
    const root = await tempDir("hubcache-messages-");
    const file = path.join(root, "cache");
    await fs.writeFile(file, "not a folder");
    const result = await cliWithin(["resolve", "--cache-dir", path.join(file, "x"), handle]);
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, /error\[ERR_HUBCACHE_NOT_WRITABLE\]: .* is a file, not a directory/);
    assert.match(result.stderr, /hint: Move that file out of the way/);
  });

  test("offline, the miss says the cache dir is a file", async () => {
    const root = await tempDir("hubcache-messages-");
    const file = path.join(root, "cache");
    await fs.writeFile(file, "not a folder");
    const error = await expectCode(
      resolve(handle, { cacheDir: file, offline: true, env: {}, flags: {} }),
      "ERR_HUBCACHE_OFFLINE",
    );
    assert.match(error.message, /is a file, not a directory/);
  });
});

describe("which setting chose the cache dir", () => {
  test("chooseCacheDirWithSource and resolveSettings say where the cache dir came from", () => {
    const env = { TFHUB_CACHE_DIR: "/from/env", TMPDIR: "/tmp-here" };
    const flags = { tfhub_cache_dir: "/from/flag" };
    assert.deepEqual(chooseCacheDirWithSource({ cacheDir: "/opt", env, flags }), {
      cacheDir: "/opt",
      source: "option",
    });
    assert.deepEqual(chooseCacheDirWithSource({ env, flags }), {
      cacheDir: "/from/env",
      source: "TFHUB_CACHE_DIR",
    });
    assert.deepEqual(chooseCacheDirWithSource({ env: { TFHUB_CACHE_DIR: "" }, flags }), {
      cacheDir: "/from/flag",
      source: "--tfhub_cache_dir",
    });
    assert.deepEqual(chooseCacheDirWithSource({ env: { TMPDIR: "/tmp-here" }, flags: {} }), {
      cacheDir: path.join("/tmp-here", "tfhub_modules"),
      source: "default",
    });
    const settings = resolveSettings({ cacheDir: "/opt", env, flags });
    assert.equal(settings.cacheDir, "/opt");
    assert.equal(settings.cacheDirSource, "option");
    assert.equal(resolveSettings({ env, flags }).cacheDirSource, "TFHUB_CACHE_DIR");
  });

  test("the offline hint names the setting that chose the cache dir", async () => {
    const dir = await tempDir("hubcache-messages-");
    const cases: [Parameters<typeof resolve>[1], RegExp, RegExp | undefined][] = [
      [
        { cacheDir: dir, env: {}, flags: {} },
        /chosen by --cache-dir \/ the cacheDir option/,
        /TFHUB_CACHE_DIR/,
      ],
      [{ env: { TFHUB_CACHE_DIR: dir }, flags: {} }, /chosen by TFHUB_CACHE_DIR/, /--cache-dir \//],
      [{ env: {}, flags: { tfhub_cache_dir: dir } }, /chosen by --tfhub_cache_dir/, /TFHUB_CACHE_DIR/],
      [{ env: { TMPDIR: dir }, flags: {} }, /the default \(<tmpdir>\/tfhub_modules/, undefined],
    ];
    for (const [options, names, notNamed] of cases) {
      const error = await expectCode(resolve(handle, { ...options, offline: true }), "ERR_HUBCACHE_OFFLINE", {
        described: true,
      });
      assert.match(error.message, /is not in the cache/);
      assert.match(error.hint ?? "", names);
      if (notNamed) assert.doesNotMatch(error.hint ?? "", notNamed);
    }
  });

  test(
    "the CLI's offline hint names --cache-dir when it chose the cache",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const dir = await tempDir("hubcache-messages-");
      const result = await cliWithin(["resolve", "--offline", "--cache-dir", dir, handle]);
      assert.equal(result.code, 1, result.stderr);
      assert.match(result.stderr, /error\[ERR_HUBCACHE_OFFLINE\]/);
      assert.match(result.stderr, /hint: .*chosen by --cache-dir/);
      assert.doesNotMatch(result.stderr, /TFHUB_CACHE_DIR/);
    },
  );
});

describe("offline with an incomplete entry", () => {
  test("says the entry is incomplete and which file, not that it is not in the cache", async () => {
    const cacheDir = await tempDir("hubcache-messages-");
    const dir = await resolve(handle, { cacheDir, env: {}, flags: {} });
    await fs.rm(path.join(dir, "group1-shard1of1.bin"));
    const requests = hub.requests.length;
    const error = await expectCode(
      resolve(handle, { cacheDir, offline: true, env: {}, flags: {} }),
      "ERR_HUBCACHE_OFFLINE",
      { described: true },
    );
    assert.match(error.message, /is incomplete: group1-shard1of1\.bin is missing/);
    assert.doesNotMatch(error.message, /not in the cache/);
    assert.equal(hub.requests.length, requests);
    await fs.truncate(path.join(dir, "model.json"), 3);
    await fs.writeFile(path.join(dir, "group1-shard1of1.bin"), "");
    const truncated = await expectCode(
      resolve(handle, { cacheDir, offline: true, env: {}, flags: {} }),
      "ERR_HUBCACHE_OFFLINE",
    );
    assert.match(truncated.message, /is incomplete: \S+ has \d+ bytes, expected \d+/);
  });
});
