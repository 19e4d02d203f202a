/** Run `hubcache resolve --json` in a child process: a separate "machine" with its own environment. */
import { type ChildProcess, spawn } from "node:child_process";
import path from "node:path";

const BIN = path.resolve("bin/hubcache.js");

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunningCli {
  child: ChildProcess;
  done: Promise<CliResult>;
}

export function spawnResolve(handles: string[], env: Record<string, string>): RunningCli {
  const child = spawn(process.execPath, [BIN, "resolve", "--json", "--quiet", ...handles], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<CliResult>((resolve) => {
    child.on("exit", (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return { child, done };
}

/** The path printed for the one handle, or a failure with the child's stderr. */
export function resolvedPath(result: CliResult): string {
  if (result.code !== 0) throw new Error(`hubcache exited ${result.code}: ${result.stdout}${result.stderr}`);
  const rows = JSON.parse(result.stdout) as { path?: string }[];
  const first = rows[0]?.path;
  if (first === undefined) throw new Error(`no path in ${result.stdout}`);
  return first;
}

/**
 * Wait for `wait` while `cli` runs: if the child exits first (it failed, or skipped the step the
 * test waits for), fail at once with its output instead of waiting forever.
 */
export function whileRunning<T>(cli: RunningCli, wait: Promise<T>, what: string): Promise<T> {
  const exited = cli.done.then((result): never => {
    throw new Error(
      `hubcache exited (code ${result.code}, signal ${result.signal}) before ${what}:\n${result.stdout}${result.stderr}`,
    );
  });
  return Promise.race([wait, exited]);
}

/** The one `until` of the tests (test/helpers/wait.ts). */
export { until } from "./wait.js";
