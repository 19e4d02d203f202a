/**
 * A cache dir owned by another user (root populated it; TF Hub issue #744): a real `hubcache`
 * child running as an unprivileged user (uid 65534 through setpriv) gets its hits without taking a
 * lock or writing anything, and a miss fails at once with a clear error that says what to set.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { entryPaths } from "../src/cache/layout.js";
import { newUid } from "../src/uid.js";
import { resolve } from "../src/resolve.js";
import { savedModelDir, tarGz, tempDir, upscalerModelDir } from "./helpers/fixtures.js";
import { type HubServer, startHubServer } from "./helpers/hub-server.js";
import { worldReadableCli } from "./helpers/runtime-copy.js";
import { deadPid, runCli, start, unprivilegedRunner, TEST_TIMEOUT_MS } from "./helpers/processes.js";

const run = promisify(execFile);
const runner = unprivilegedRunner();
const skip = "skip" in runner ? runner.skip : false;
const asUid = "uid" in runner ? runner.uid : 65534;

let server: HubServer;
let base: string;
let cacheDir: string;
let cached: string;
let uncached: string;

before(async () => {
  server = await startHubServer();
  server.add("/google/readonly/1", { archive: await tarGz(await upscalerModelDir()) });
  server.add("/google/readonly-miss/1", { archive: await tarGz(await savedModelDir()) });
  cached = server.handle("/google/readonly/1");
  uncached = server.handle("/google/readonly-miss/1");
  base = await tempDir("hubcache-readonly-");
  await fs.chmod(base, 0o755); // others may enter; only root may write
  cacheDir = path.join(base, "cache");
  await resolve(cached, { cacheDir }); // populated by root
});
after(() => server.close());

/** Every name below `dir` with its size, mtime and mode: any write shows up here. */
async function snapshot(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (target: string, rel: string): Promise<void> => {
    const stat = await fs.lstat(target);
    out.push(`${rel} ${stat.size} ${stat.mtimeMs} ${stat.mode.toString(8)}`);
    if (stat.isDirectory()) {
      for (const name of (await fs.readdir(target)).sort()) {
        await walk(path.join(target, name), `${rel}/${name}`);
      }
    }
  };
  await walk(dir, ".");
  return out;
}

async function resolveAsNobody(
  handle: string,
  dir = cacheDir,
  extra: string[] = [],
): ReturnType<typeof runCli> {
  // A world-readable copy of the CLI: the repository itself may sit where that user cannot enter.
  const cli = await worldReadableCli();
  return runCli(["resolve", "--cache-dir", dir, "--lock-timeout", "600", ...extra, handle], { asUid, cli });
}

/** A copy of the read-only cache with `cp -a` (new inodes), owned by root like the original. */
async function copiedCache(name: string): Promise<string> {
  const copy = path.join(base, name);
  await run("cp", ["-a", cacheDir, copy]);
  return copy;
}

describe("read-only cache dir owned by another user", { skip }, () => {
  test("the child really runs unprivileged", { timeout: TEST_TIMEOUT_MS }, async () => {
    const result = await start(process.execPath, ["-e", "process.stdout.write(String(process.getuid()))"], {
      asUid,
    }).done;
    assert.equal(result.stdout, String(asUid));
  });

  test(
    "a hit is served without a lock or any write, and without a request",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const before = await snapshot(cacheDir);
      const requests = server.requests.length;
      const result = await resolveAsNobody(cached);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout, `${entryPaths(cacheDir, cached).dir}\n`);
      assert.equal(result.stderr, "");
      assert.deepEqual(await snapshot(cacheDir), before, "nothing written");
      assert.equal(server.requests.length, requests, "no request");
    },
  );

  test(
    "a miss fails at once with ERR_HUBCACHE_NOT_WRITABLE saying what to set, before any request",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const before = await snapshot(cacheDir);
      const requests = server.requests.length;
      const result = await resolveAsNobody(uncached);
      assert.equal(result.code, 1);
      assert.equal(result.stdout, "");
      assert.match(
        result.stderr,
        /^error\[ERR_HUBCACHE_NOT_WRITABLE\]: The cache directory .* is not writable \(EACCES\)/,
      );
      assert.match(result.stderr, /hint: Set TFHUB_CACHE_DIR/);
      assert.deepEqual(await snapshot(cacheDir), before);
      assert.equal(server.requests.length, requests);
    },
  );

  test(
    "a miss fails at once even while another user's live download holds the lock",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const lock = entryPaths(cacheDir, uncached).lock;
      const holder = `${os.hostname()}.${process.pid}.${newUid()}`; // this (root) process: alive
      await fs.writeFile(lock, holder);
      try {
        const before = await snapshot(cacheDir);
        const requests = server.requests.length;
        const result = await resolveAsNobody(uncached); // a 10-minute window: waiting would time out
        assert.equal(result.code, 1);
        assert.match(result.stderr, /ERR_HUBCACHE_NOT_WRITABLE/);
        assert.doesNotMatch(result.stderr, /waiting: /, "it did not wait for the holder");
        assert.equal(server.requests.length, requests, "no request");
        assert.deepEqual(await snapshot(cacheDir), before, "nothing written");
        assert.equal(await fs.readFile(lock, "utf8"), holder, "the live holder's lock is untouched");
      } finally {
        await fs.rm(lock);
      }
    },
  );

  test(
    "a hit beside a dead holder's lock it cannot remove is still served",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const lock = entryPaths(cacheDir, cached).lock;
      const holder = `${os.hostname()}.${await deadPid()}.${newUid()}`;
      await fs.writeFile(lock, holder);
      try {
        const requests = server.requests.length;
        const result = await resolveAsNobody(cached);
        assert.equal(result.code, 0, result.stderr);
        assert.equal(result.stdout, `${entryPaths(cacheDir, cached).dir}\n`);
        assert.equal(server.requests.length, requests, "a hit: no request");
        // Still there: only a user who may write the cache dir removes it.
        assert.equal(await fs.readFile(lock, "utf8"), holder);
      } finally {
        await fs.rm(lock);
      }
    },
  );

  test(
    "a shared sticky cache dir: another user's dead lock that cannot be removed fails at once",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const shared = path.join(base, "shared");
      await fs.mkdir(shared);
      await fs.chmod(shared, 0o1777); // like /tmp: anyone may create, only owners may remove
      const lock = entryPaths(shared, uncached).lock;
      const holder = `${os.hostname()}.${await deadPid()}.${newUid()}`;
      await fs.writeFile(lock, holder);
      const old = new Date(Date.now() - 60_000);
      await fs.utimes(lock, old, old);
      const requests = server.requests.length;
      const result = await resolveAsNobody(uncached, shared);
      assert.equal(result.code, 1);
      assert.match(result.stderr, /ERR_HUBCACHE_NOT_WRITABLE/);
      assert.match(
        result.stderr,
        new RegExp(`lock .*\\.lock \\(held by ${holder}, which is gone\\) cannot be removed`),
      );
      assert.equal(server.requests.length, requests);
      assert.deepEqual(await fs.readdir(shared), [path.basename(lock)], "nothing else left behind");
    },
  );
  test(
    "a copied read-only cache (cp -a): a whole copy is served without a request or a write",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const copy = await copiedCache("copy-whole");
      const before = await snapshot(copy);
      const requests = server.requests.length;
      const result = await resolveAsNobody(cached, copy);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout, `${entryPaths(copy, cached).dir}\n`);
      assert.deepEqual(await snapshot(copy), before, "nothing written");
      assert.equal(server.requests.length, requests, "no request");
    },
  );

  test(
    "a copied read-only cache with a file deleted is not served: it needs a download it cannot write",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const copy = await copiedCache("copy-partial");
      await fs.rm(path.join(entryPaths(copy, cached).dir, "group1-shard1of1.bin"));
      const before = await snapshot(copy);
      const requests = server.requests.length;
      const result = await resolveAsNobody(cached, copy);
      assert.equal(result.code, 1);
      assert.equal(result.stdout, "", "the partial copy is not returned");
      assert.match(result.stderr, /ERR_HUBCACHE_NOT_WRITABLE/);
      assert.equal(server.requests.length, requests);
      assert.deepEqual(await snapshot(copy), before, "nothing written");
      const offline = await resolveAsNobody(cached, copy, ["--offline"]);
      assert.equal(offline.code, 1);
      assert.match(offline.stderr, /ERR_HUBCACHE_OFFLINE.*is incomplete: group1-shard1of1\.bin is missing/);
      assert.doesNotMatch(offline.stderr, /not in the cache/);
    },
  );

  test(
    "a read-only cache dir that is a file, or under /proc, fails at once saying so",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const file = path.join(base, "a-file");
      await fs.writeFile(file, "not a folder");
      const result = await resolveAsNobody(uncached, path.join(file, "cache"));
      assert.equal(result.code, 1);
      assert.match(result.stderr, /ERR_HUBCACHE_NOT_WRITABLE.*is a file, not a directory/);
      const started = Date.now();
      const proc = await resolveAsNobody(uncached, "/proc/hubcache-no-such-dir");
      assert.equal(proc.code, 1);
      assert.match(proc.stderr, /ERR_HUBCACHE_NOT_WRITABLE.*\/proc\/hubcache-no-such-dir cannot be created/);
      assert.ok(Date.now() - started < 30_000, "at once");
    },
  );
});
