// Cache management with real child processes (the built CLI): kill -9 in the middle of rm and of
// prune, the size cap kept under concurrent resolves, a download in progress left alone by prune
// and rm, and a read-only cache owned by another user (ls and verify work, hits record nothing).
import assert from "node:assert/strict";
import { existsSync, promises as fs } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { entryPaths } from "../src/cache/layout.js";
import { listEntries, pruneCache, removeEntries } from "../src/manage/index.js";
import { resolve } from "../src/resolve.js";
import { savedModelDir, tarGz, tempDir } from "./helpers/fixtures.js";
import { type HubServer, startHubServer } from "./helpers/hub-server.js";
import {
  TEST_TIMEOUT_MS,
  leftovers,
  runCli,
  start,
  startCli,
  unprivilegedRunner,
  waitForFile,
} from "./helpers/processes.js";
import { worldReadableCli } from "./helpers/runtime-copy.js";
import { until } from "./helpers/wait.js";

let hub: HubServer;
const MODELS = ["/m/one/1", "/m/two/1", "/m/three/1", "/m/four/1", "/m/five/1", "/m/six/1"];

before(async () => {
  hub = await startHubServer();
  for (const model of MODELS) hub.add(model, { archive: await tarGz(await savedModelDir(64 * 1024)) });
});
after(() => hub.close());

const handles = (): string[] => MODELS.map((m) => hub.handle(m));

async function filledCache(count: number): Promise<string> {
  const cacheDir = await tempDir("hubcache-manage-proc-");
  for (const handle of handles().slice(0, count)) await resolve(handle, { cacheDir });
  return cacheDir;
}

/** Names in the cache dir that are neither an entry nor its descriptor or record. */
async function debris(cacheDir: string): Promise<string[]> {
  const names = await fs.readdir(cacheDir);
  return names.filter((n) => !/^[0-9a-f]{40}(\.descriptor\.txt|\.hubcache\.json)?$/.test(n)).sort();
}

/** Run the CLI paused at `point`, then kill -9 it there. */
async function killAt(args: string[], point: string): Promise<void> {
  const pauseFile = path.join(await tempDir(), "paused");
  const child = startCli(args, {
    env: { HUBCACHE_TEST_PAUSE_AT: point, HUBCACHE_TEST_PAUSE_FILE: pauseFile },
  });
  await Promise.race([
    waitForFile(pauseFile),
    child.done.then((r) => {
      throw new Error(`exited before pausing: ${r.stdout}${r.stderr}`);
    }),
  ]);
  child.child.kill("SIGKILL");
  const done = await child.done;
  assert.equal(done.signal, "SIGKILL");
}

describe("kill -9 in the middle of a removal", () => {
  test(
    "rm: the entry is gone from its name at once; the next prune clears the debris",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const cacheDir = await filledCache(2);
      const [one, two] = handles();
      const paths = entryPaths(cacheDir, one as string);
      await killAt(["rm", "--cache-dir", cacheDir, one as string], "after-remove-rename");
      assert.equal(existsSync(paths.dir), false, "no half-entry under the entry's name");
      assert.ok((await debris(cacheDir)).some((n) => n.endsWith(".trash")));
      const states = (await listEntries({ cacheDir })).entries.map((e) => [e.handle, e.state]);
      assert.deepEqual(states, [
        [one, "incomplete"], // its descriptor and record, without the folder: not the entry
        [two, "ok"],
      ]);
      // A resolve sees it missing and downloads it again, whole.
      const downloads = hub.downloads().length;
      assert.equal(await resolve(one as string, { cacheDir }), paths.dir);
      assert.equal(hub.downloads().length, downloads + 1);
      const pruned = await runCli(["prune", "--json", "--cache-dir", cacheDir]);
      assert.equal(pruned.code, 0, pruned.stderr);
      assert.ok((JSON.parse(pruned.stdout) as { debris: string[] }).debris.some((d) => d.endsWith(".trash")));
      assert.deepEqual(await debris(cacheDir), []);
      assert.deepEqual(
        (await listEntries({ cacheDir })).entries.map((e) => e.state),
        ["ok", "ok"],
      );
    },
  );

  test(
    "prune: entries are whole or gone; the next prune takes the dead prune lock over and clears up",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const cacheDir = await filledCache(3);
      await killAt(["prune", "--max-size", "0", "--cache-dir", cacheDir], "after-remove-rename");
      assert.ok(existsSync(path.join(cacheDir, "hubcache-prune.lock")), "the dead prune's lock is left");
      for (const entry of (await listEntries({ cacheDir })).entries) {
        if (entry.state === "ok") continue;
        assert.equal(entry.state, "incomplete");
        assert.equal(existsSync(entry.path), false, "no half-entry under the entry's name");
      }
      // The dead holder's lock must be quiet for 2 s before it is taken over (docs/concurrency.md).
      await new Promise((r) => setTimeout(r, 2200));
      const again = await pruneCache({ cacheDir, maxBytes: 0 });
      assert.equal(again.ran, true);
      assert.ok(again.debris.some((d) => d.endsWith(".trash")));
      assert.deepEqual(await fs.readdir(cacheDir), []);
    },
  );
});

describe("size cap under concurrent resolves", () => {
  test(
    "six processes each download a model with HUBCACHE_MAX_SIZE: the cache ends within the cap plus one entry",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const probe = await filledCache(1);
      const entryBytes = (await listEntries({ cacheDir: probe })).totalBytes;
      const cacheDir = await tempDir("hubcache-cap-");
      const cap = Math.floor(entryBytes * 2.5);
      const runs = handles().map((handle) =>
        startCli(["resolve", "--cache-dir", cacheDir, handle], { env: { HUBCACHE_MAX_SIZE: String(cap) } }),
      );
      const results = await Promise.all(runs.map((r) => r.done));
      for (const result of results) assert.equal(result.code, 0, result.stderr);
      const listing = await listEntries({ cacheDir });
      assert.ok(listing.totalBytes <= cap + entryBytes, `${listing.totalBytes} > ${cap} + ${entryBytes}`);
      assert.ok(
        listing.entries.length >= 1 && listing.entries.length <= 3,
        `${listing.entries.length} entries`,
      );
      assert.ok(listing.entries.every((e) => e.state === "ok"));
      assert.deepEqual(await leftovers(cacheDir), []);
    },
  );
});

describe("a download in progress", () => {
  test("prune and rm leave it alone and do not wait for it", { timeout: TEST_TIMEOUT_MS }, async () => {
    const cacheDir = await filledCache(1);
    const [, busy] = handles();
    const paths = entryPaths(cacheDir, busy as string);
    const release = hub.holdDownloads();
    const child = startCli(["resolve", "--cache-dir", cacheDir, busy as string]);
    try {
      await until(() => existsSync(paths.lock), "the child's lock");
      const holder = await fs.readFile(paths.lock, "utf8");
      const started = Date.now();
      const pruned = await pruneCache({ cacheDir, maxBytes: 0 });
      assert.ok(Date.now() - started < 5000, "prune did not wait for the download");
      assert.ok(!pruned.removed.some((p) => p.entry.hash === paths.hash));
      const refused = await removeEntries([busy as string], { cacheDir });
      assert.equal(refused.results[0]?.error?.code, "ERR_HUBCACHE_IN_USE");
      assert.match(refused.results[0]?.error?.message ?? "", new RegExp(`\\.${child.pid}\\.`));
      assert.equal(await fs.readFile(paths.lock, "utf8"), holder, "its lock is untouched");
    } finally {
      release();
    }
    const done = await child.done;
    assert.equal(done.code, 0, done.stderr);
    assert.equal(done.stdout, `${paths.dir}\n`);
    assert.equal((await listEntries({ cacheDir })).entries.find((e) => e.hash === paths.hash)?.state, "ok");
  });
});

const runner = unprivilegedRunner();
describe("a read-only cache owned by another user", { skip: "skip" in runner ? runner.skip : false }, () => {
  test(
    "ls and verify work; a hit records no use and fails nothing",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const base = await tempDir("hubcache-manage-ro-");
      await fs.chmod(base, 0o755);
      const cacheDir = path.join(base, "cache");
      const [one] = handles();
      await resolve(one as string, { cacheDir });
      const dir = entryPaths(cacheDir, one as string).dir;
      const old = new Date(Date.now() - 5 * 3_600_000);
      await fs.utimes(dir, old, old);
      const cli = await worldReadableCli();
      const asUid = "uid" in runner ? runner.uid : 65534;
      const ls = await runCli(["ls", "--json", "--cache-dir", cacheDir], { asUid, cli });
      assert.equal(ls.code, 0, ls.stderr);
      assert.equal((JSON.parse(ls.stdout) as { entries: unknown[] }).entries.length, 1);
      const verify = await runCli(["verify", "--cache-dir", cacheDir], { asUid, cli });
      assert.equal(verify.code, 0, verify.stdout + verify.stderr);
      assert.match(verify.stdout, /^ok /);
      const hit = await runCli(["resolve", "--cache-dir", cacheDir, one as string], {
        asUid,
        cli,
        env: { HUBCACHE_TOUCH_INTERVAL: "0" },
      });
      assert.equal(hit.code, 0, hit.stderr);
      assert.equal(hit.stderr, "");
      // utimes stores the time in ns and mtimeMs reads it back as a float: equal to within 1 ms.
      const unchanged = Math.abs((await fs.stat(dir)).mtimeMs - old.getTime()) < 1;
      assert.ok(unchanged, "no use recorded");
      // Root (the owner) does record it.
      await start(process.execPath, [cli, "resolve", "--cache-dir", cacheDir, one as string], {
        env: { HUBCACHE_TOUCH_INTERVAL: "0" },
      }).done;
      assert.ok((await fs.stat(dir)).mtimeMs > old.getTime());
    },
  );
});
