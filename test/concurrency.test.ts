/**
 * Many resolvers, one download: real child processes racing on a local host, in-process callers,
 * foreign and dead lock holders, and the stale window's settings from option, variable and flag.
 */
import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { after, before, describe, test } from "node:test";
import { descriptorText, entryPaths, lockContent } from "../src/cache/layout.js";
import { newUid } from "../src/uid.js";
import {
  GUARD_STALE_MS,
  acquireLock,
  lockGuardPath,
  readLockFile,
  removeLeftovers,
  removeLockIf,
} from "../src/cache/disk-lock.js";
import { sweepCacheDir } from "../src/cache/orphans.js";
import { inspectDiskEntry } from "../src/cache/disk-store.js";
import { ErrorCode, HubcacheError } from "../src/errors.js";
import type { HubcacheEvent } from "../src/events.js";
import { DEFAULT_LOCK_TIMEOUT_MS, resolve, resolveSettings } from "../src/resolve.js";
import { readTree, savedModelDir, tempDir } from "./helpers/fixtures.js";
import { type FlakyHost, startFlakyHost } from "./helpers/flaky-host.js";
import { type HubServer } from "./helpers/hub-server.js";
import { TEST_TIMEOUT_MS, deadPid, leftovers, runCli, startCli, waitForFile } from "./helpers/processes.js";
import { type FreshModel, type ModelHost, startModelHost } from "./helpers/model-host.js";
import { until } from "./helpers/wait.js";
import { expectCode } from "./helpers/assertions.js";

let server: HubServer;
let modelDir: string;
let archive: Buffer;
let host: ModelHost;

before(async () => {
  host = await startModelHost("concurrency", await savedModelDir(256 * 1024));
  ({ server, modelDir, archive } = host);
});
after(() => server.close());

/** A fresh model path on the host (so each test counts its own downloads) and a fresh cache dir. */
const fresh = (): Promise<FreshModel> => host.fresh();

async function assertHealthyEntry(cacheDir: string, handle: string): Promise<void> {
  const paths = entryPaths(cacheDir, handle);
  assert.deepEqual(await readTree(paths.dir), await readTree(modelDir), "the entry holds the model");
  assert.equal(inspectDiskEntry(paths).state, "hit");
  assert.deepEqual(await leftovers(cacheDir), [], "no .lock or .tmp left in the cache dir");
}

/** Write a lock as another process would: "host.pid.uid", with its temp dir. */
async function plantLock(
  cacheDir: string,
  handle: string,
  host: string,
  pid: number,
): Promise<{ content: string; uid: string; tmpDir: string }> {
  const paths = entryPaths(cacheDir, handle);
  const uid = newUid();
  const content = `${host}.${pid}.${uid}`;
  await fs.writeFile(paths.lock, content);
  const tmpDir = paths.tmpDir(uid);
  await fs.mkdir(path.join(tmpDir, "variables"), { recursive: true });
  await fs.writeFile(path.join(tmpDir, "saved_model.pb"), Buffer.alloc(1000));
  return { content, uid, tmpDir };
}

/** Make a file or tree look untouched for a while (a holder that died some time ago). */
async function age(target: string, seconds: number): Promise<void> {
  const time = new Date(Date.now() - seconds * 1000);
  if ((await fs.stat(target)).isDirectory()) {
    for (const name of await fs.readdir(target)) await age(path.join(target, name), seconds);
  }
  await fs.utimes(target, time, time);
}

describe("concurrency: many resolvers, one download", () => {
  test(
    "8 processes racing on a cold handle make exactly one download and print the same path",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { handle, cacheDir, downloads } = await fresh();
      // Hold the archive until 7 processes say they are waiting for the 8th: the race is certain.
      const open = server.holdDownloads();
      const runs = Array.from({ length: 8 }, () =>
        startCli(["resolve", "--cache-dir", cacheDir, "--lock-timeout", "600", handle]),
      );
      try {
        await until(
          () => runs.filter((run) => run.stderr().includes("waiting: ")).length === 7,
          "7 of 8 processes waiting for the lock",
        );
      } finally {
        open();
      }
      const results = await Promise.all(runs.map((run) => run.done));
      const expected = `${entryPaths(cacheDir, handle).dir}\n`;
      for (const result of results) {
        assert.equal(result.code, 0, result.stderr);
        assert.equal(result.stdout, expected);
      }
      assert.equal(downloads(), 1, "exactly one download at the host");
      const holder = runs.find((run) => !run.stderr().includes("waiting: "));
      assert.ok(holder, "one process held the lock");
      for (const run of runs) {
        if (run === holder) continue;
        assert.match(
          run.stderr(),
          new RegExp(`waiting: .* is being downloaded by ${os.hostname()}\\.${holder.pid}\\.[0-9a-f]{32} `),
        );
      }
      await assertHealthyEntry(cacheDir, handle);
    },
  );

  test(
    "20 concurrent resolves in one process make one download and return one path",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { handle, cacheDir, downloads } = await fresh();
      server.throttleBytesPerSecond = archive.length; // about a second: every call starts before it ends
      try {
        const results = await Promise.all(Array.from({ length: 20 }, () => resolve(handle, { cacheDir })));
        assert.equal(new Set(results).size, 1);
        assert.equal(results[0], entryPaths(cacheDir, handle).dir);
      } finally {
        server.throttleBytesPerSecond = 0;
      }
      assert.equal(downloads(), 1);
      await assertHealthyEntry(cacheDir, handle);
    },
  );

  test(
    "in one process, a caller that aborts does not fail the others sharing its download",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { handle, cacheDir, downloads } = await fresh();
      server.throttleBytesPerSecond = archive.length / 4;
      try {
        const controller = new AbortController();
        const first = resolve(handle, {
          cacheDir,
          signal: controller.signal,
          onEvent: (event) => {
            if (event.type === "progress" && event.downloadedBytes > 0) controller.abort();
          },
        });
        const others = Array.from({ length: 5 }, () => resolve(handle, { cacheDir }));
        await expectCode(first, "ERR_HUBCACHE_ABORTED");
        server.throttleBytesPerSecond = 0;
        const results = await Promise.all(others);
        assert.deepEqual(new Set(results), new Set([entryPaths(cacheDir, handle).dir]));
      } finally {
        server.throttleBytesPerSecond = 0;
      }
      assert.equal(downloads(), 2, "the aborted download, then one more for the others");
      await assertHealthyEntry(cacheDir, handle);
    },
  );

  test(
    "several processes finding a dead holder's lock: one takes over, one download, orphans removed",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { handle, cacheDir, downloads } = await fresh();
      const dead = await plantLock(cacheDir, handle, os.hostname(), await deadPid());
      for (const target of [entryPaths(cacheDir, handle).lock, dead.tmpDir]) await age(target, 30);
      server.throttleBytesPerSecond = archive.length / 2;
      try {
        // A stale window of 10 minutes: only the dead-holder check can explain a quick takeover.
        const results = await Promise.all(
          Array.from({ length: 4 }, () =>
            runCli(["resolve", "--cache-dir", cacheDir, "--lock-timeout", "600", handle]),
          ),
        );
        for (const result of results) assert.equal(result.code, 0, result.stderr);
        assert.deepEqual(
          new Set(results.map((r) => r.stdout)),
          new Set([`${entryPaths(cacheDir, handle).dir}\n`]),
        );
        const takeovers = results.filter((r) => r.stderr.includes(`took over the download of ${handle}`));
        assert.equal(takeovers.length, 1, "exactly one process took the lock over");
        assert.match(takeovers[0]?.stderr ?? "", new RegExp(`from ${dead.content} \\(holder is gone\\)`));
      } finally {
        server.throttleBytesPerSecond = 0;
      }
      assert.equal(downloads(), 1);
      await assertHealthyEntry(cacheDir, handle);
    },
  );

  test(
    "a foreign holder is waited for while its temp dir grows, then taken over after the window",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { handle, cacheDir, downloads } = await fresh();
      const foreign = await plantLock(cacheDir, handle, "gpu-node-7.cluster.example", 4242);
      const run = startCli(["resolve", "--cache-dir", cacheDir, "--lock-timeout", "4", handle]);
      // The foreign holder makes progress: its temp dir grows every 200 ms for 6 s (longer than
      // the 4 s window, which only a 4 s pause of this process could exhaust), then it stops, as a
      // download on another machine that hangs.
      const weights = path.join(foreign.tmpDir, "variables", "variables.data-00000-of-00001");
      for (let i = 0; i < 30; i++) {
        await fs.appendFile(weights, Buffer.alloc(4096, i));
        await sleep(200);
      }
      assert.equal(downloads(), 0, "no download while the foreign holder made progress");
      assert.equal(run.child.exitCode, null, "still waiting");
      const result = await run.done;
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout, `${entryPaths(cacheDir, handle).dir}\n`);
      assert.match(result.stderr, new RegExp(`waiting: .* is being downloaded by ${foreign.content} `));
      assert.match(
        result.stderr,
        new RegExp(`took over the download of .* from ${foreign.content} \\(no progress for 4 s\\)`),
      );
      assert.equal(downloads(), 1);
      await assertHealthyEntry(cacheDir, handle); // the foreign temp dir is gone too
    },
  );

  for (const point of ["during-download", "before-rename"] as const) {
    test(
      `a holder judged stale that comes back (frozen ${point}) does not publish: it uses the new holder's entry`,
      { timeout: TEST_TIMEOUT_MS },
      async () => {
        const { handle, cacheDir, downloads } = await fresh();
        const paths = entryPaths(cacheDir, handle);
        const pauseFile = path.join(await tempDir("hubcache-pause-"), "paused");
        // Slow, so that the first heartbeat ("during-download") comes before the archive ends.
        server.throttleBytesPerSecond = archive.length / 4;
        let frozen;
        try {
          frozen = startCli(["resolve", "--cache-dir", cacheDir, handle], {
            env: { HUBCACHE_TEST_PAUSE_AT: point, HUBCACHE_TEST_PAUSE_FILE: pauseFile },
          });
          await waitForFile(pauseFile);
        } finally {
          server.throttleBytesPerSecond = 0;
        }
        const frozenLock = await fs.readFile(paths.lock, "utf8");

        // Alive but making no progress: with a 1 s window another resolver takes over (removing
        // the frozen one's temp dir as an orphan) and publishes.
        const events: HubcacheEvent[] = [];
        await resolve(handle, { cacheDir, lockTimeoutMs: 1000, onEvent: (e) => events.push(e) });
        const takeover = events.find((e) => e.type === "lock-takeover");
        assert.deepEqual(takeover && [takeover.reason, takeover.holder], ["no-progress", frozenLock]);
        const published = (await fs.stat(paths.dir)).ino;

        await fs.rm(pauseFile); // the stalled holder comes back
        const result = await frozen.done;
        assert.equal(result.code, 0, result.stderr);
        assert.equal(result.stdout, `${paths.dir}\n`);
        assert.match(result.stderr, /warning: the download lock of .* was taken over as stalled/);
        assert.equal((await fs.stat(paths.dir)).ino, published, "the new holder's entry was kept");
        assert.equal(downloads(), 2);
        await assertHealthyEntry(cacheDir, handle);
      },
    );
  }

  test(
    "a holder whose lock was removed (as Python's stale check does) never writes its descriptor over the new holder's",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { handle, cacheDir, downloads } = await fresh();
      const paths = entryPaths(cacheDir, handle);
      const pauseFile = path.join(await tempDir("hubcache-pause-"), "paused");
      // Frozen with the archive extracted, before anything of the entry's is written.
      const frozen = startCli(["resolve", "--cache-dir", cacheDir, handle], {
        env: { HUBCACHE_TEST_PAUSE_AT: "after-extract", HUBCACHE_TEST_PAUSE_FILE: pauseFile },
      });
      await waitForFile(pauseFile);
      // Python's waiter removes a stale lock and leaves the old holder's temp dir alone.
      const stale = await readLockFile(paths.lock);
      assert.ok(stale);
      assert.ok(await removeLockIf(paths.lock, stale));
      await resolve(handle, { cacheDir });
      const descriptor = await fs.readFile(paths.descriptor, "utf8");
      assert.match(descriptor, new RegExp(`\\(PID:${process.pid}\\)$`), "the new holder's descriptor");

      await fs.rm(pauseFile); // the old holder comes back
      const result = await frozen.done;
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout, `${paths.dir}\n`);
      assert.equal(await fs.readFile(paths.descriptor, "utf8"), descriptor, "not overwritten");
      assert.equal(downloads(), 2);
      await assertHealthyEntry(cacheDir, handle);
    },
  );

  test(
    "20 waiters racing to take over the same dead lock: exactly one gets it, 25 times over",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      // The race is between one waiter removing the dead lock and creating its own, and another
      // waiter that judged the dead lock stale a moment earlier and now tries to remove it: that
      // must never remove (or even briefly move away) the new lock. Repeated, because an unsafe
      // removal loses only a narrow race (about one round in four failed before the guard).
      for (let round = 0; round < 25; round++) {
        const cacheDir = await tempDir("hubcache-concurrency-");
        const handle = "https://example.com/model/race";
        const paths = entryPaths(cacheDir, handle);
        // Our own PID, a uid we do not hold, last touched before this process started: a leftover.
        const stale = `${os.hostname()}.${process.pid}.${newUid()}`;
        await fs.writeFile(paths.lock, stale);
        await age(paths.lock, 3600);
        let done = false;
        const events: HubcacheEvent[] = [];
        const waiters = Array.from({ length: 20 }, () =>
          acquireLock(paths, {
            handle,
            timeoutMs: 60_000,
            emit: (event) => events.push(event),
            entryReady: () => done,
            pollMs: 1,
          }),
        );
        const winner = await Promise.race(waiters.map((w) => w.then((lock) => lock && w)));
        setTimeout(() => (done = true), 30); // let the others look at the new lock for a while
        const results = await Promise.all(waiters);
        const held = results.filter((lock) => lock !== undefined);
        assert.equal(held.length, 1, `one holder (round ${round})`);
        assert.equal(winner, held[0], "the first waiter to return a lock is the one holder");
        assert.equal(events.filter((e) => e.type === "lock-takeover").length, 1, "one takeover");
        assert.equal(await fs.readFile(paths.lock, "utf8"), held[0]?.content);
        await held[0]?.release();
        assert.deepEqual(await leftovers(cacheDir), []);
      }
    },
  );

  test("a removal guard left by a dead remover is broken at once; a live one is waited for", async () => {
    const cacheDir = await tempDir("hubcache-concurrency-");
    const paths = entryPaths(cacheDir, "https://example.com/model/guard");
    const guard = lockGuardPath(paths.lock);
    const dead = await deadPid();
    await fs.writeFile(paths.lock, `${os.hostname()}.${dead}.${newUid()}`);
    await age(paths.lock, 60);
    await fs.writeFile(guard, `${os.hostname()}.${dead}.${newUid()}`);
    const lock = await acquireLock(paths, {
      handle: "h",
      timeoutMs: 60_000,
      emit: () => undefined,
      entryReady: () => false,
      pollMs: 5,
    });
    assert.ok(lock, "took over despite the dead remover's guard");
    assert.equal(await fs.readFile(paths.lock, "utf8"), lockContent(lock.uid), "the lock is ours now");
    // A live remover's guard (this process, fresh): release waits for it, then removes the lock.
    await fs.writeFile(guard, lockContent(newUid()));
    let released = false;
    const releasing = lock.release().then(() => (released = true));
    await sleep(200);
    assert.equal(released, false, "waits while another remover holds the guard");
    await fs.rm(guard);
    await releasing;
    assert.deepEqual(await leftovers(cacheDir), []);
    // A guard untouched for longer than GUARD_STALE_MS (its remover froze or crashed elsewhere) is swept.
    await fs.writeFile(guard, lockContent(newUid()));
    await sweepCacheDir(cacheDir, { timeoutMs: 60_000, emit: () => undefined });
    assert.deepEqual(await leftovers(cacheDir), [path.basename(guard)], "a fresh guard is kept");
    await age(guard, GUARD_STALE_MS / 1000 + 1);
    await sweepCacheDir(cacheDir, { timeoutMs: 60_000, emit: () => undefined });
    assert.deepEqual(await leftovers(cacheDir), []);
  });

  test("a sweep installs the descriptor and record of an entry whose writer died right after publishing it", async () => {
    const cacheDir = await tempDir("hubcache-concurrency-");
    const handle = "https://example.com/model/published-then-killed";
    const paths = entryPaths(cacheDir, handle);
    const dead = await plantLock(cacheDir, handle, os.hostname(), await deadPid());
    // It renamed its temp dir into place, then died before installing its descriptor and record.
    await fs.rename(dead.tmpDir, paths.dir);
    const dir = await fs.stat(paths.dir);
    const record = {
      version: 1,
      handle,
      dev: dir.dev,
      ino: dir.ino,
      birthtimeMs: dir.birthtimeMs,
      createdAt: new Date().toISOString(),
      bytes: 1000,
      archiveBytes: 300,
      files: [{ path: "saved_model.pb", size: 1000 }],
    };
    await fs.writeFile(`${paths.record}.tmp${dead.uid}`, JSON.stringify(record));
    const descriptor = descriptorText(handle);
    await fs.writeFile(`${paths.descriptor}.tmp${dead.uid}`, descriptor);
    for (const target of [paths.lock, paths.dir]) await age(target, 30);
    // Another entry's download sweeps the whole cache dir.
    await sweepCacheDir(cacheDir, { timeoutMs: 60_000, emit: () => undefined });
    assert.deepEqual(await leftovers(cacheDir), []);
    assert.equal(await fs.readFile(paths.descriptor, "utf8"), descriptor);
    assert.equal(inspectDiskEntry(paths).state, "hit");
    assert.deepEqual(JSON.parse(await fs.readFile(paths.record, "utf8")), record);
  });

  test(
    "waiters report who they wait for at most every reportEveryMs",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const cacheDir = await tempDir("hubcache-concurrency-");
      const paths = entryPaths(cacheDir, "https://example.com/model/1");
      const holder = `other-host.77.${newUid()}`;
      await fs.writeFile(paths.lock, holder);
      const events: HubcacheEvent[] = [];
      const waits = (): Extract<HubcacheEvent, { type: "lock-wait" }>[] =>
        events.flatMap((e) => (e.type === "lock-wait" ? [e] : []));
      // The wait ends after the 4th report, not after a fixed time: a slow machine makes fewer
      // polls, never a different outcome. What is timed is read from the reports' own clock.
      let polls = 0;
      const lock = await acquireLock(paths, {
        handle: "https://example.com/model/1",
        timeoutMs: 60_000,
        emit: (event) => events.push(event),
        entryReady: () => {
          polls++;
          return waits().length >= 4;
        },
        pollMs: 10,
        reportEveryMs: 400,
      });
      assert.equal(lock, undefined, "the entry became ready while waiting");
      assert.equal(waits().length, 4);
      assert.ok(polls > waits().length, `not one report per poll (${polls} polls)`);
      assert.ok(
        (waits()[0]?.waitedMs ?? 0) >= 400,
        "the first report comes after reportEveryMs at the earliest",
      );
      for (const wait of waits()) assert.equal(wait.holder, holder);
      for (let i = 1; i < waits().length; i++) {
        const gap = (waits()[i]?.waitedMs ?? 0) - (waits()[i - 1]?.waitedMs ?? 0);
        assert.ok(gap >= 400, `reports ${gap} ms apart`);
      }
    },
  );

  test(
    "a lock held in this process is never judged dead, even one taken by another copy of hubcache",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const cacheDir = await tempDir("hubcache-concurrency-");
      const paths = entryPaths(cacheDir, "https://example.com/model/2");
      const options = {
        handle: "https://example.com/model/2",
        timeoutMs: 60_000,
        emit: () => undefined,
        pollMs: 10,
      };
      const held = await acquireLock(paths, { ...options, entryReady: () => false });
      assert.ok(held);
      assert.equal(await fs.readFile(paths.lock, "utf8"), lockContent(held.uid));
      let polls = 0;
      const events: HubcacheEvent[] = [];
      const waited = await acquireLock(paths, {
        ...options,
        emit: (event) => events.push(event),
        entryReady: () => ++polls > 300, // 3 s of polling: longer than any "gone" grace
      });
      assert.equal(waited, undefined);
      assert.equal(
        events.some((e) => e.type === "lock-takeover"),
        false,
      );
      await held.release();
      await assert.rejects(fs.stat(paths.lock), { code: "ENOENT" });
    },
  );
});

describe("concurrency: a holder that waits between attempts (Retry-After, backoff)", () => {
  let flaky: FlakyHost;
  let routes = 0;
  before(async () => {
    flaky = await startFlakyHost();
  });
  after(() => flaky.close());

  /** A route that answers 503 with Retry-After first, then the model archive. */
  async function busyModel(retryAfterSeconds: number): Promise<{
    handle: string;
    cacheDir: string;
    requests: () => number;
  }> {
    const route = `/busy/${++routes}`;
    flaky.route(route, [
      { status: 503, headers: { "retry-after": String(retryAfterSeconds) } },
      { body: archive },
    ]);
    return {
      handle: flaky.url(route),
      cacheDir: await tempDir("hubcache-concurrency-"),
      requests: () => flaky.requestsTo(route).length,
    };
  }

  test(
    "a host answering 503 + Retry-After longer than --lock-timeout: the waiting holder is not taken over, one download, both print the path",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { handle, cacheDir, requests } = await busyModel(7);
      const args = ["resolve", "--cache-dir", cacheDir, "--lock-timeout", "2.5", handle];
      const first = startCli(args);
      // The first holds the lock and has been told to come back in 7 s; then the second arrives.
      await until(() => requests() === 1, "the first resolver's 503");
      const second = startCli(args);
      const [a, b] = await Promise.all([first.done, second.done]);
      const expected = `${entryPaths(cacheDir, handle).dir}\n`;
      for (const result of [a, b]) {
        assert.equal(result.code, 0, result.stderr);
        assert.equal(result.stdout, expected, result.stderr);
      }
      assert.doesNotMatch(b.stderr, /took over/, "a live holder honouring Retry-After is not stale");
      assert.equal(requests(), 2, "one 503, then one download");
      await assertHealthyEntry(cacheDir, handle);
    },
  );

  test(
    "a holder whose lock is taken over during its backoff stops before its next request and uses the new holder's work",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { handle, cacheDir, requests } = await busyModel(5);
      // Retry-After 5 s: the window in which the test takes the lock over (a few ms of work).
      const paths = entryPaths(cacheDir, handle);
      const events: HubcacheEvent[] = [];
      let requestsWhenStopped: number | undefined;
      const first = resolve(handle, {
        cacheDir,
        onEvent: (event) => {
          events.push(event);
          if (event.type === "warning" && /taken over/.test(event.message)) requestsWhenStopped = requests();
        },
      });
      await until(() => events.some((e) => e.type === "retry"), "the first resolver's backoff");
      // Take the lock over as a waiter that judged it stale does (another host, or a Python
      // process): remove it and the holder's temp dir, and hold a lock of our own.
      const stale = await readLockFile(paths.lock);
      assert.ok(stale);
      assert.ok(await removeLockIf(paths.lock, stale));
      await removeLeftovers(paths, stale.owner.uid, () => undefined);
      const ours = await acquireLock(paths, {
        handle,
        timeoutMs: 60_000,
        emit: () => undefined,
        entryReady: () => false,
      });
      assert.ok(ours);
      await until(() => requestsWhenStopped !== undefined, "the first resolver to notice");
      assert.equal(requestsWhenStopped, 1, "no request after the lock was lost");
      await ours.release(); // we publish nothing: the first resolver takes the lock again
      assert.equal(await first, paths.dir);
      assert.equal(requests(), 2);
      assert.equal(events.filter((e) => e.type === "published").length, 1);
      await assertHealthyEntry(cacheDir, handle);
    },
  );
});

describe("concurrency: the stale window (lockTimeoutMs, HUBCACHE_LOCK_TIMEOUT, --lock-timeout)", () => {
  test("settings: option > HUBCACHE_LOCK_TIMEOUT (seconds) > default, and a bad value is refused", () => {
    assert.equal(resolveSettings({ env: {}, flags: {} }).lockTimeoutMs, DEFAULT_LOCK_TIMEOUT_MS);
    assert.ok(DEFAULT_LOCK_TIMEOUT_MS < (20 * 60_000) / 10, "far below TF Hub's ~20 minutes");
    const env = { HUBCACHE_LOCK_TIMEOUT: "2.5" };
    assert.equal(resolveSettings({ env, flags: {} }).lockTimeoutMs, 2500);
    assert.equal(resolveSettings({ env, flags: {}, lockTimeoutMs: 700 }).lockTimeoutMs, 700);
    assert.throws(
      () => resolveSettings({ env: { HUBCACHE_LOCK_TIMEOUT: "soon" }, flags: {} }),
      (error: unknown) => error instanceof HubcacheError && error.code === ErrorCode.INVALID_CONFIG,
    );
  });

  for (const [how, args, env] of [
    ["--lock-timeout 1.5", ["--lock-timeout", "1.5"], {}],
    ["HUBCACHE_LOCK_TIMEOUT=1.5", [], { HUBCACHE_LOCK_TIMEOUT: "1.5" }],
  ] as const) {
    test(
      `${how} reaches the lock: a stalled foreign lock is taken over after 1.5 s`,
      { timeout: TEST_TIMEOUT_MS },
      async () => {
        const { handle, cacheDir, downloads } = await fresh();
        const foreign = await plantLock(cacheDir, handle, "build-agent-3", 99);
        const result = await runCli(["resolve", "--cache-dir", cacheDir, ...args, handle], { env });
        assert.equal(result.code, 0, result.stderr);
        assert.match(result.stderr, new RegExp(`from ${foreign.content} \\(no progress for 1\\.5 s\\)`));
        assert.equal(downloads(), 1);
        await assertHealthyEntry(cacheDir, handle);
      },
    );
  }

  test(
    "the library option reaches the lock too, and is reported with each takeover",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { handle, cacheDir, downloads } = await fresh();
      await plantLock(cacheDir, handle, "build-agent-4", 98);
      const events: HubcacheEvent[] = [];
      await resolve(handle, { cacheDir, lockTimeoutMs: 1200, onEvent: (e) => events.push(e) });
      const takeover = events.find((e) => e.type === "lock-takeover");
      assert.deepEqual(takeover && { reason: takeover.reason, staleAfterMs: takeover.staleAfterMs }, {
        reason: "no-progress",
        staleAfterMs: 1200,
      });
      assert.equal(downloads(), 1);
      await assertHealthyEntry(cacheDir, handle);
    },
  );

  test("--lock-timeout must be a number", { timeout: TEST_TIMEOUT_MS }, async () => {
    const result = await runCli(["resolve", "--lock-timeout", "soon", "https://example.com/m/1"]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /--lock-timeout needs a non-negative number/);
  });
});

describe("concurrency: permanent errors fail at once", () => {
  test(
    "a cache dir that is a file fails with ERR_HUBCACHE_NOT_WRITABLE, no request made",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { handle, downloads } = await fresh();
      const base = await tempDir("hubcache-concurrency-");
      const notADir = path.join(base, "file");
      await fs.writeFile(notADir, "x");
      const before = server.requests.length;
      await assert.rejects(
        resolve(handle, { cacheDir: path.join(notADir, "cache") }),
        (error: unknown) => error instanceof HubcacheError && error.code === ErrorCode.NOT_WRITABLE,
      );
      assert.equal(server.requests.length, before);
      assert.equal(downloads(), 0);
    },
  );
});
