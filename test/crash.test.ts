/**
 * kill -9 at every step of a download: a real `hubcache resolve` child is frozen at a named step
 * (test-only hook HUBCACHE_TEST_PAUSE_AT, src/cache/test-pause.ts), SIGKILLed there, and the next
 * resolve must succeed, remove the dead process's lock and temp files, and never serve a partial
 * entry. The next resolve runs with a 10-minute stale window: only recognising the dead holder can
 * let it recover, so a recovery that waited for the window would time the test out.
 */
import assert from "node:assert/strict";
import { existsSync, promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { entryPaths } from "../src/cache/layout.js";
import { newUid } from "../src/uid.js";
import { inspectDiskEntry } from "../src/cache/disk-store.js";
import { PAUSE_POINTS, type PausePoint } from "../src/cache/test-pause.js";
import type { HubcacheEvent } from "../src/events.js";
import { resolve } from "../src/resolve.js";
import { readTree, savedModelDir, tempDir } from "./helpers/fixtures.js";
import { type HubServer } from "./helpers/hub-server.js";
import { leftovers, startCli, waitForFile, TEST_TIMEOUT_MS } from "./helpers/processes.js";
import { type FreshModel, type ModelHost, startModelHost } from "./helpers/model-host.js";

const TEN_MINUTES = 10 * 60_000;

let server: HubServer;
let modelDir: string;
let archive: Buffer;
let host: ModelHost;

before(async () => {
  host = await startModelHost("crash", await savedModelDir(256 * 1024));
  ({ server, modelDir, archive } = host);
});
after(() => server.close());

/** A fresh model path on the host (so each test counts its own downloads) and a fresh cache dir. */
const fresh = (): Promise<FreshModel> => host.fresh();

/** Start `hubcache resolve` frozen at `point`; resolves once it is frozen there. */
async function frozenAt(
  point: PausePoint,
  handle: string,
  cacheDir: string,
): Promise<ReturnType<typeof startCli>> {
  const pauseFile = path.join(await tempDir("hubcache-pause-"), "paused");
  const run = startCli(["resolve", "--cache-dir", cacheDir, handle], {
    env: { HUBCACHE_TEST_PAUSE_AT: point, HUBCACHE_TEST_PAUSE_FILE: pauseFile },
  });
  await Promise.race([
    waitForFile(pauseFile),
    run.done.then((r) => assert.fail(`exited before ${point}: ${r.stderr}`)),
  ]);
  assert.equal(await fs.readFile(pauseFile, "utf8"), point);
  return run;
}

async function kill9(run: ReturnType<typeof startCli>): Promise<void> {
  run.child.kill("SIGKILL");
  const result = await run.done;
  assert.equal(result.signal, "SIGKILL");
}

/** What the frozen process has on disk at each step, besides its lock (uid = the lock's). */
function expectedLeftovers(point: PausePoint, hash: string, uid: string): string[] {
  const names = [`${hash}.lock`];
  if (point !== "after-rename" && point !== "before-release") names.push(`${hash}.${uid}.tmp`);
  if (point === "during-descriptor-write" || point === "before-rename" || point === "after-rename") {
    names.push(`${hash}.descriptor.txt.tmp${uid}`);
  }
  if (point === "before-rename" || point === "after-rename") names.push(`${hash}.hubcache.json.tmp${uid}`);
  return names.sort();
}

async function ageTree(target: string, seconds: number): Promise<void> {
  const time = new Date(Date.now() - seconds * 1000);
  if ((await fs.stat(target)).isDirectory()) {
    for (const name of await fs.readdir(target)) await ageTree(path.join(target, name), seconds);
  }
  await fs.utimes(target, time, time);
}

const PUBLISHED: readonly PausePoint[] = ["after-rename", "before-release"];

describe("crash safety: kill -9 at any step", () => {
  for (const point of PAUSE_POINTS) {
    test(
      `killed ${point}: the next resolve recovers at once and leaves no .lock or .tmp`,
      { timeout: TEST_TIMEOUT_MS },
      async () => {
        const { handle, cacheDir, downloads } = await fresh();
        const paths = entryPaths(cacheDir, handle);
        // A slow host, so the first heartbeat ("during-download") comes before the archive ends.
        if (point === "during-download") server.throttleBytesPerSecond = archive.length / 4;
        let run;
        try {
          run = await frozenAt(point, handle, cacheDir);
        } finally {
          server.throttleBytesPerSecond = 0;
        }

        const lock = await fs.readFile(paths.lock, "utf8");
        const uid = lock.split(".").pop() ?? "";
        assert.equal(lock, `${os.hostname()}.${run.pid}.${uid}`, "the lock names the frozen process");
        assert.deepEqual(await leftovers(cacheDir), expectedLeftovers(point, paths.hash, uid));
        const published = PUBLISHED.includes(point);
        assert.equal(inspectDiskEntry(paths).state, published ? "hit" : "missing", "never a partial entry");
        assert.equal(
          existsSync(paths.descriptor),
          point === "before-release",
          "the descriptor appears only with the published entry and its record",
        );
        await kill9(run);

        const events: HubcacheEvent[] = [];
        const dir = await resolve(handle, {
          cacheDir,
          lockTimeoutMs: TEN_MINUTES,
          onEvent: (event) => events.push(event),
        });
        assert.equal(dir, paths.dir);
        assert.deepEqual(await readTree(dir), await readTree(modelDir));
        const state = inspectDiskEntry(paths);
        assert.equal(state.state === "hit" && state.writer, "hubcache", "hubcache's record is in place");
        assert.deepEqual(await leftovers(cacheDir), [], "no .lock or .tmp left");
        // The descriptor names whoever published the entry: the killed process, or this one.
        const descriptor = await fs.readFile(paths.descriptor, "utf8");
        assert.match(descriptor, new RegExp(`\\(PID:${published ? run.pid : process.pid}\\)$`));
        assert.equal(downloads(), published ? 1 : 2);
        if (published) {
          assert.ok(
            events.some((e) => e.type === "orphan-removed" && e.path === paths.lock),
            "the hit removed the dead holder's lock",
          );
        } else {
          const takeover = events.find((e) => e.type === "lock-takeover");
          assert.deepEqual(takeover && [takeover.reason, takeover.holder], ["holder-dead", lock]);
        }
      },
    );
  }
});

describe("crash safety: orphans are removed whenever hubcache sees them", () => {
  test(
    "a miss on another model sweeps a killed download's lock and temp dir",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const first = await fresh();
      server.throttleBytesPerSecond = archive.length / 4;
      let run;
      try {
        run = await frozenAt("during-download", first.handle, first.cacheDir);
      } finally {
        server.throttleBytesPerSecond = 0;
      }
      await kill9(run);
      const left = await leftovers(first.cacheDir);
      assert.equal(left.length, 2, "its lock and temp dir");
      // It died a while ago (a gone holder's files must be quiet for 2 s before anyone removes them).
      for (const name of left) await ageTree(path.join(first.cacheDir, name), 10);

      // Another model, same cache dir, a 10-minute window: the dead holder's leftovers still go.
      const other = `${first.handle.replace(/\/1$/, "")}-other/1`;
      server.add(new URL(other).pathname, { archive });
      const events: HubcacheEvent[] = [];
      const dir = await resolve(other, {
        cacheDir: first.cacheDir,
        lockTimeoutMs: TEN_MINUTES,
        onEvent: (e) => events.push(e),
      });
      assert.deepEqual(await readTree(dir), await readTree(modelDir), "the other model resolved");
      assert.deepEqual(await leftovers(first.cacheDir), []);
      const removed = events.flatMap((e) => (e.type === "orphan-removed" ? [path.basename(e.path)] : []));
      assert.deepEqual(removed.sort(), left, "the killed download's lock and temp dir were removed");
      assert.equal(inspectDiskEntry(entryPaths(first.cacheDir, first.handle)).state, "missing");
    },
  );

  test(
    "unowned temp dirs are removed once quiet for the stale window, not before",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { handle, cacheDir } = await fresh();
      const stale = entryPaths(cacheDir, "https://example.com/stale/1").tmpDir(newUid());
      const recent = entryPaths(cacheDir, "https://example.com/recent/1").tmpDir(newUid());
      for (const dir of [stale, recent]) {
        await fs.mkdir(path.join(dir, "variables"), { recursive: true });
        await fs.writeFile(path.join(dir, "variables", "variables.index"), "x");
      }
      const old = new Date(Date.now() - 120_000);
      for (const target of [
        path.join(stale, "variables", "variables.index"),
        path.join(stale, "variables"),
        stale,
      ]) {
        await fs.utimes(target, old, old);
      }
      await resolve(handle, { cacheDir, lockTimeoutMs: 60_000 });
      assert.deepEqual(await leftovers(cacheDir), [path.basename(recent)], "only the recent one stays");
    },
  );
});
