// Runs every test file with Node's own test runner (TypeScript through tsx), with a guard that
// keeps every test process, and every Node child it starts, on this machine (loopback only).
import { spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";

const only = process.argv.slice(2);
const files = readdirSync("test")
  .filter((name) => name.endsWith(".test.ts"))
  .map((name) => `test/${name}`)
  .filter((file) => only.length === 0 || only.some((pattern) => file.includes(pattern)))
  .sort();

// Every temp dir the tests make goes under one folder for this run, removed at the end. It is
// world-traversable, and the guard's copy in it world-readable: tests also run children as an
// unprivileged user.
const runTmp = mkdtempSync(path.join(os.tmpdir(), "hubcache-tests-"));
chmodSync(runTmp, 0o755);
const guard = path.join(runTmp, "loopback-guard.mjs");
copyFileSync("test/helpers/loopback-guard.mjs", guard);
chmodSync(guard, 0o644);

const env = {
  ...process.env,
  TMPDIR: runTmp,
  NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ""} --import=${guard}`.trim(),
  // Cloud SDKs must never look for credentials or metadata servers off this machine.
  AWS_EC2_METADATA_DISABLED: "true",
  AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
  METADATA_SERVER_DETECTION: "none",
};
// A hang must fail CI with a message, not burn its time budget. On Node 20 --test-timeout bounds
// each test file's process (the file is reported as "test timed out after ... ms"); newer Nodes
// apply it to each test. Either way 10 minutes is generous: the slowest file takes under a minute
// on an idle 2-core machine. Tests with child processes also have their own bound
// (TEST_TIMEOUT_MS in test/helpers/processes.ts).
const TEST_TIMEOUT_MS = 10 * 60_000;
const result = spawnSync(
  process.execPath,
  [
    "--import",
    "tsx",
    "--test",
    "--test-reporter=spec",
    "--test-concurrency=2",
    `--test-timeout=${TEST_TIMEOUT_MS}`,
    ...files,
  ],
  { stdio: "inherit", env },
);
rmSync(runTmp, { recursive: true, force: true, maxRetries: 3 });
process.exit(result.status ?? 1);
