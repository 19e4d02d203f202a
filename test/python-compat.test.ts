/**
 * Python tensorflow_hub and hubcache sharing one cache dir, in both directions. tensorflow_hub cannot
 * be installed here (no PyPI), so the Python side is test/helpers/tfhub_atomic_download.py: a
 * step-by-step re-enactment of TF Hub's atomic_download / _wait_for_lock_to_disappear (same lock
 * name and content, same temp dir name, same stale rule) running as a real python3 process.
 */
import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import os from "node:os";
import { after, before, describe, test } from "node:test";
import { entryPaths } from "../src/cache/layout.js";
import { inspectDiskEntry } from "../src/cache/disk-store.js";
import type { HubcacheEvent } from "../src/events.js";
import { resolve } from "../src/resolve.js";
import { readTree, upscalerModelDir } from "./helpers/fixtures.js";
import { type HubServer } from "./helpers/hub-server.js";
import {
  PYTHON_TFHUB,
  type Running,
  findPython,
  leftovers,
  start,
  startCli,
  TEST_TIMEOUT_MS,
} from "./helpers/processes.js";
import { type FreshModel, type ModelHost, startModelHost } from "./helpers/model-host.js";
import { until } from "./helpers/wait.js";

const python = findPython();
const skip = python === undefined ? "python3 is not installed" : false;

let server: HubServer;
let modelDir: string;
let archive: Buffer;
let host: ModelHost;

before(async () => {
  host = await startModelHost("python", await upscalerModelDir());
  ({ server, modelDir, archive } = host);
});
after(() => server.close());

/** A fresh model path on the host (so each test counts its own downloads) and a fresh cache dir. */
const fresh = (): Promise<FreshModel> => host.fresh();

/** The TF Hub re-enactment resolving `handle`; its "download" copies the model in small slow chunks. */
function startPython(
  handle: string,
  cacheDir: string,
  options: { chunkBytes?: number; chunkDelay?: number; lockTimeout?: number; poll?: number } = {},
): Running {
  return start(python ?? "python3", [
    PYTHON_TFHUB,
    "--cache-dir",
    cacheDir,
    "--handle",
    handle,
    "--source",
    modelDir,
    "--chunk-bytes",
    String(options.chunkBytes ?? 8192),
    "--chunk-delay",
    String(options.chunkDelay ?? 0.05),
    "--lock-timeout",
    String(options.lockTimeout ?? 600),
    "--poll",
    String(options.poll ?? 5),
  ]);
}

async function pythonResult(run: Running): Promise<{ path: string; downloaded: boolean; stderr: string }> {
  const result = await run.done;
  assert.equal(result.code, 0, result.stderr);
  return { ...(JSON.parse(result.stdout) as { path: string; downloaded: boolean }), stderr: result.stderr };
}

async function lockOf(lockFile: string): Promise<string> {
  await until(async () => (await fs.readFile(lockFile, "utf8").catch(() => "")) !== "", lockFile);
  return fs.readFile(lockFile, "utf8");
}

describe("Python tensorflow_hub compatibility (re-enacted protocol, real python3 process)", { skip }, () => {
  test(
    "a Python-held lock with a growing temp dir is waited for, and Python's entry is reused",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { handle, cacheDir, downloads } = await fresh();
      const paths = entryPaths(cacheDir, handle);
      const py = startPython(handle, cacheDir, { chunkDelay: 0.1 }); // about 100 chunks: 10 s
      const lock = await lockOf(paths.lock);
      assert.match(lock, new RegExp(`^${os.hostname()}\\.${py.pid}\\.[0-9a-f]{32}$`));

      // A stale window far shorter than Python's download: only its progress keeps hubcache
      // waiting. Python writes a chunk every 0.1 s, so only a 4 s pause of it on a loaded machine
      // would look like a stall.
      const cli = startCli(["resolve", "--cache-dir", cacheDir, "--lock-timeout", "4", handle]);
      const fromPython = await pythonResult(py);
      const fromCli = await cli.done;
      assert.equal(fromPython.downloaded, true);
      assert.equal(fromCli.code, 0, fromCli.stderr);
      assert.equal(fromCli.stdout, `${fromPython.path}\n`);
      assert.equal(fromPython.path, paths.dir);
      assert.match(fromCli.stderr, new RegExp(`waiting: .* is being downloaded by ${lock} `));
      assert.doesNotMatch(fromCli.stderr, /took over/);
      assert.equal(downloads(), 0, "hubcache never downloaded: it used Python's entry");
      assert.deepEqual(await readTree(paths.dir), await readTree(modelDir));
      const state = inspectDiskEntry(paths);
      assert.equal(state.state === "hit" && state.writer, "other", "an entry without hubcache's record");
      assert.match(
        await fs.readFile(paths.descriptor, "utf8"),
        new RegExp(
          `^Module: ${handle}\nDownload Time: .*\nDownloader Hostname: ${os.hostname()} \\(PID:${py.pid}\\)$`,
        ),
      );
      assert.deepEqual(await leftovers(cacheDir), []);
    },
  );

  test(
    "a lock hubcache holds is one Python waits for (no steal while it grows), then Python reuses the entry",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { handle, cacheDir, downloads } = await fresh();
      const paths = entryPaths(cacheDir, handle);
      server.throttleBytesPerSecond = archive.length / 12; // about 12 s
      let cli: Running;
      let fromPython;
      try {
        cli = startCli(["resolve", "--cache-dir", cacheDir, handle]);
        const lock = await lockOf(paths.lock);
        assert.match(lock, new RegExp(`^${os.hostname()}\\.${cli.pid}\\.[0-9a-f]{32}$`));
        // Python with a 3 s window, polling every 0.2 s: it steals unless hubcache's temp dir grew
        // in each window (the first window only takes a snapshot). Its windows end after about 3,
        // 6 and 9 s, within the 12 s download, so the rule is applied at least twice; hubcache
        // grows its temp dir all along (16 KiB pieces, several a second), and a window as
        // wide as 3 s leaves room for a slow start or a pause on a loaded machine.
        const py = startPython(handle, cacheDir, { lockTimeout: 3, poll: 0.2 });
        fromPython = await pythonResult(py);
        assert.match(fromPython.stderr, new RegExp(`already being downloaded by '${lock}'\\. Waiting\\.`));
      } finally {
        server.throttleBytesPerSecond = 0;
      }
      const fromCli = await cli.done;
      assert.equal(fromCli.code, 0, fromCli.stderr);
      assert.doesNotMatch(fromPython.stderr, /Deleting lock file/);
      assert.equal(fromPython.downloaded, false, "Python reused hubcache's entry");
      assert.equal(`${fromPython.path}\n`, fromCli.stdout);
      assert.equal(fromPython.path, paths.dir);
      assert.equal(downloads(), 1);
      const state = inspectDiskEntry(paths);
      assert.equal(state.state === "hit" && state.writer, "hubcache");

      // And later: Python's fast path takes hubcache's finished entry without a lock.
      const again = await pythonResult(startPython(handle, cacheDir));
      assert.equal(again.downloaded, false);
      assert.equal(again.path, paths.dir);
      assert.deepEqual(await readTree(paths.dir), await readTree(modelDir));
      assert.deepEqual(await leftovers(cacheDir), []);
    },
  );

  test(
    "a Python process killed -9 mid-download: hubcache takes over at once and removes its leftovers",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { handle, cacheDir, downloads } = await fresh();
      const paths = entryPaths(cacheDir, handle);
      const py = startPython(handle, cacheDir, { chunkDelay: 0.2 });
      const lock = await lockOf(paths.lock);
      const uid = lock.split(".").pop() ?? "";
      await until(async () => (await fs.readdir(paths.tmpDir(uid)).catch(() => [])).length > 0, "data");
      py.child.kill("SIGKILL");
      await py.done;
      assert.deepEqual(await leftovers(cacheDir), [`${paths.hash}.${uid}.tmp`, `${paths.hash}.lock`].sort());

      const events: HubcacheEvent[] = [];
      const dir = await resolve(handle, {
        cacheDir,
        lockTimeoutMs: 10 * 60_000, // TF Hub would wait 2 x 10 min here
        onEvent: (e) => events.push(e),
      });
      assert.equal(dir, paths.dir);
      const takeover = events.find((e) => e.type === "lock-takeover");
      assert.deepEqual(takeover && [takeover.reason, takeover.holder], ["holder-dead", lock]);
      assert.equal(downloads(), 1);
      assert.deepEqual(await readTree(dir), await readTree(modelDir));
      assert.deepEqual(await leftovers(cacheDir), []);
    },
  );
});
