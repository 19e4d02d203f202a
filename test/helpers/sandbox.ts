/**
 * A throwaway root with the cache inside it and an "outside" folder beside it, so a test can
 * prove both halves of "leave no trace": the cache holds nothing (no entry, no .tmp, no .lock,
 * no descriptor) and nothing appeared anywhere else under the root.
 */
import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import path from "node:path";
import type { HubcacheError } from "../../src/errors.js";
import { expectCode as expectCodeOf } from "./assertions.js";
import { tempDir } from "./fixtures.js";

export interface Sandbox {
  root: string;
  cacheDir: string;
  /** A folder outside the cache that attacks aim at; holds `secret.txt`. */
  outside: string;
  cleanup(): Promise<void>;
}

export const SECRET = "do not touch\n";

export async function makeSandbox(): Promise<Sandbox> {
  const root = await tempDir("hubcache-sandbox-");
  const cacheDir = path.join(root, "cache");
  const outside = path.join(root, "outside");
  await fs.mkdir(outside);
  await fs.writeFile(path.join(outside, "secret.txt"), SECRET);
  return {
    root,
    cacheDir,
    outside,
    cleanup: () => fs.rm(root, { recursive: true, force: true }),
  };
}

/** Every path below `dir`, relative, sorted (links are listed, not followed). */
export async function listAll(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (current: string, prefix: string): Promise<void> => {
    for (const entry of await fs.readdir(current, { withFileTypes: true })) {
      const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
      out.push(rel);
      if (entry.isDirectory()) await walk(path.join(current, entry.name), rel);
    }
  };
  await walk(dir, "");
  return out.sort();
}

/**
 * Wait until this process has no file-system request in flight, on several checks in a row.
 * Node lists every pending fs request (callback, stream or promise API) in
 * process.getActiveResourcesInfo() as FSReqCallback or FSReqPromise, so this observes when the
 * writes another component queued (node-tar's) have all landed, including any it chains from
 * their callbacks (those are queued before the next check runs). A timed sleep instead would pass
 * vacuously on a slow machine: a late write could land after the check.
 */
export async function fsIdle(timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let quietChecks = 0;
  while (quietChecks < 5) {
    await new Promise((r) => setTimeout(r, 10));
    const pending = process.getActiveResourcesInfo().filter((name) => name.startsWith("FSReq"));
    quietChecks = pending.length === 0 ? quietChecks + 1 : 0;
    if (Date.now() > deadline) {
      throw new Error(`fs requests still pending after ${timeoutMs} ms: ${pending.join(", ")}`);
    }
  }
}

/** The cache dir is empty (or was never created) and the root holds only cache/ and outside/secret.txt. */
export async function assertNoTrace(sandbox: Sandbox): Promise<void> {
  let cached: string[] = [];
  try {
    cached = await fs.readdir(sandbox.cacheDir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  assert.deepEqual(cached, [], "the cache dir must hold nothing: no entry, no .tmp, no .lock");
  const everything = (await listAll(sandbox.root)).filter((p) => p !== "cache");
  assert.deepEqual(everything, ["outside", "outside/secret.txt"], "nothing may appear outside the cache");
  assert.equal(await fs.readFile(path.join(sandbox.outside, "secret.txt"), "utf8"), SECRET);
}

/** Run `work`, which must reject with a HubcacheError of `code` that has a hint and names the handle. */
export function expectCode(work: Promise<unknown>, code: string): Promise<HubcacheErrorLike> {
  return expectCodeOf(work, code, { described: true });
}

export type HubcacheErrorLike = HubcacheError;
