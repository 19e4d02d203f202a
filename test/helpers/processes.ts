/**
 * Real child processes for the concurrency and crash tests: the `hubcache` CLI (bin/hubcache.js,
 * which runs the built dist/), the TF Hub protocol re-enactment in Python, and small utilities to
 * wait for files and to list what a cache directory holds.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { until } from "./wait.js";

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
export const CLI = path.join(REPO_ROOT, "bin", "hubcache.js");
export const PYTHON_TFHUB = path.join(REPO_ROOT, "test", "helpers", "tfhub_atomic_download.py");

/**
 * Per-test bound for the tests with child processes: generous (the machine is shared and slow),
 * so a protocol that waits when it should not fails the test instead of hanging it.
 */
export const TEST_TIMEOUT_MS = 90_000;

export interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface Running {
  child: ChildProcess;
  pid: number;
  /** Everything written to stderr so far. */
  stderr(): string;
  done: Promise<Finished>;
}

export interface SpawnOptions {
  env?: Record<string, string | undefined>;
  /** bin/hubcache.js to run (default: this repository's; see runtime-copy.ts for other users). */
  cli?: string;
  /** Run as this unprivileged user id (and group id), through setpriv. */
  asUid?: number;
}

/**
 * The test runner's own guards, which every child keeps: the loopback guard (NODE_OPTIONS
 * --import, set by scripts/run-tests.mjs) and the switches that keep cloud SDKs off metadata servers.
 */
const GUARDS = ["NODE_OPTIONS", "AWS_EC2_METADATA_DISABLED", "METADATA_SERVER_DETECTION"] as const;

/** A clean environment: no settings from the developer's shell leak into a test. */
function childEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, LANG: "C" };
  for (const key of GUARDS) if (process.env[key] !== undefined) env[key] = process.env[key];
  for (const [key, value] of Object.entries(extra)) if (value !== undefined) env[key] = value;
  return env;
}

export function start(command: string, args: string[], options: SpawnOptions = {}): Running {
  const [file, argv] =
    options.asUid === undefined
      ? [command, args]
      : [
          "setpriv",
          [`--reuid=${options.asUid}`, `--regid=${options.asUid}`, "--clear-groups", command, ...args],
        ];
  // Another user may not be able to enter the repository: run it from the temp dir.
  const cwd = options.asUid === undefined ? REPO_ROOT : os.tmpdir();
  const child = spawn(file, argv, { cwd, env: childEnv(options.env), stdio: "pipe" });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const done = new Promise<Finished>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  if (child.pid === undefined) throw new Error(`could not start ${file}`);
  return { child, pid: child.pid, stderr: () => stderr, done };
}

/** `hubcache ...args` as a child process. */
export function startCli(args: string[], options: SpawnOptions = {}): Running {
  return start(process.execPath, [options.cli ?? CLI, ...args], options);
}

export function runCli(args: string[], options: SpawnOptions = {}): Promise<Finished> {
  return startCli(args, options).done;
}

/** python3, if this machine has one (the cross-process tests with the TF Hub re-enactment need it). */
export function findPython(): string | undefined {
  for (const candidate of ["python3", "/usr/bin/python3"]) {
    const probe = spawnSync(candidate, ["-c", "import sys; print(sys.version_info[0])"], {
      encoding: "utf8",
    });
    if (probe.status === 0 && probe.stdout.trim() === "3") return candidate;
  }
  return undefined;
}

/** How a test can run a child as an unprivileged user, or why it cannot. */
export function unprivilegedRunner(): { uid: number } | { skip: string } {
  if (process.platform !== "linux") return { skip: "needs Linux (setpriv)" };
  if (process.getuid?.() !== 0) return { skip: "needs root to switch to an unprivileged user" };
  const probe = spawnSync("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "true"]);
  if (probe.status !== 0) return { skip: "setpriv is not available to switch users" };
  return { uid: 65534 };
}

/**
 * The old name of `until` (test/helpers/wait.ts), kept while files owned elsewhere still import it.
 * Import `until` from "./wait.js" instead.
 */
export const waitUntil = until;

export function waitForFile(file: string, timeoutMs?: number): Promise<void> {
  return until(() => existsSync(file), file, timeoutMs);
}

/** The pid of a process that has exited (and was reaped): a lock naming it has a dead holder. */
export async function deadPid(): Promise<number> {
  const run = start(process.execPath, ["-e", ""]);
  await run.done;
  return run.pid;
}

/** Names in the cache dir that a finished, healthy cache must not hold: locks and temp files or dirs. */
export async function leftovers(cacheDir: string): Promise<string[]> {
  const names = await fs.readdir(cacheDir);
  return names.filter((name) => /\.lock$|\.guard$|\.tmp$|\.tmp[0-9a-f]{32}$|\.partial$/.test(name)).sort();
}
