// SIGINT/SIGTERM during a download: the real CLI, as a child process, resolving from a host that
// stalls mid-body. It must abort, let the library remove its lock and temp folder, and exit 130
// (SIGINT) or 143 (SIGTERM); a second signal exits at once, even when the cleanup would hang.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { entryPaths } from "../src/cache/layout.js";
import { benignEntries, gzip, tarOf } from "./helpers/archives.js";
import { realisticWeights } from "./helpers/fixtures.js";
import { type FlakyHost, startFlakyHost } from "./helpers/flaky-host.js";
import { CLI, TEST_TIMEOUT_MS, leftovers, start, startCli, waitUntil } from "./helpers/processes.js";
import { listAll, makeSandbox } from "./helpers/sandbox.js";

let host: FlakyHost;
before(async () => {
  host = await startFlakyHost();
  // Big enough that the stall comes mid-body, after the lock is taken and extraction began.
  const archive = gzip(
    tarOf([...benignEntries(), { path: "./weights.bin", content: realisticWeights(1 << 20) }]),
  );
  host.route("/stalls/1", [{ body: archive, stallAfter: Math.floor(archive.length / 2) }]);
});
after(() => host.close());

const CASES = [
  { signal: "SIGINT", code: 130 },
  { signal: "SIGTERM", code: 143 },
] as const;

describe("a signal during a download", () => {
  for (const { signal, code } of CASES) {
    test(
      `${signal}: exits ${code} with no lock and no temp folder left`,
      { timeout: TEST_TIMEOUT_MS },
      async () => {
        const sandbox = await makeSandbox();
        try {
          const handle = host.url("/stalls/1");
          const served = host.bytesServed("/stalls/1");
          const run = startCli(["resolve", "--cache-dir", sandbox.cacheDir, handle]);
          const lock = `${entryPaths(sandbox.cacheDir, handle).dir}.lock`;
          await waitUntil(
            () => existsSync(lock) && host.bytesServed("/stalls/1") > served,
            "the download to start",
          );
          await waitUntil(
            async () => (await leftovers(sandbox.cacheDir)).some((n) => n.includes(".tmp")),
            "a temp dir",
          );
          run.child.kill(signal);
          const result = await run.done;
          assert.equal(result.code, code, result.stderr);
          assert.deepEqual(
            await leftovers(sandbox.cacheDir),
            [],
            (await listAll(sandbox.cacheDir)).join("\n"),
          );
          assert.match(result.stderr, /stopping and cleaning up/);
          assert.match(
            result.stderr,
            /^error\[ERR_HUBCACHE_ABORTED\]: .*\n {2}hint: hubcache was stopped; run the command again/m,
          );
        } finally {
          await sandbox.cleanup();
        }
      },
    );
  }

  test(
    "a second signal exits at once, even when the cleanup hangs",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const sandbox = await makeSandbox();
      try {
        // A preload turns abort() into a no-op: the first signal then stops nothing.
        const preload = `data:text/javascript,${encodeURIComponent("AbortController.prototype.abort = function () {};")}`;
        const handle = host.url("/stalls/1");
        const run = start(
          process.execPath,
          ["--import", preload, CLI, "resolve", "--cache-dir", sandbox.cacheDir, handle],
          {
            env: { HUBCACHE_IDLE_TIMEOUT: "600" },
          },
        );
        const lock = `${entryPaths(sandbox.cacheDir, handle).dir}.lock`;
        await waitUntil(() => existsSync(lock), "the download to start");
        run.child.kill("SIGINT");
        await waitUntil(() => run.stderr().includes("stopping and cleaning up"), "the first signal's notice");
        run.child.kill("SIGTERM");
        const result = await run.done;
        assert.equal(result.code, 143, result.stderr);
      } finally {
        await sandbox.cleanup();
      }
    },
  );
});
