/**
 * OpenStack Swift with its s3api middleware (Debian packages), the S3-compatible server that checks
 * signatures, ranges and preconditions for real. Where it comes from, in order:
 * 1. HUBCACHE_TEST_SWIFT_ENDPOINT (CI starts it with scripts/swift-s3.sh and exports this);
 * 2. started here with scripts/swift-s3.sh when the swift binaries are installed, stopped after;
 * 3. otherwise the Swift tests skip with a message, except under CI=true, where they fail.
 * Credentials are tempauth's "test:tester" / "testing"; region us-east-1; path-style.
 */
import { execFile } from "node:child_process";
import { existsSync, promises as fs } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);
const SCRIPT = path.resolve("scripts/swift-s3.sh");

export type SwiftServer = { endpoint: string; stop(): Promise<void> } | { skip: string };

function onPath(binary: string): boolean {
  return (process.env.PATH ?? "")
    .split(path.delimiter)
    .some((dir) => dir && existsSync(path.join(dir, binary)));
}

async function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

/** A base port with the four after it free too (Swift uses PORT..PORT+4). */
async function freePortRange(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20000 + Math.floor(Math.random() * 20000);
    let ok = true;
    for (let i = 0; i < 5 && ok; i++) ok = await portFree(base + i);
    if (ok) return base;
  }
  throw new Error("no free port range for Swift");
}

async function healthy(endpoint: string): Promise<boolean> {
  try {
    const response = await fetch(`${endpoint.replace(/\/+$/, "")}/healthcheck`);
    return response.ok;
  } catch {
    return false;
  }
}

export async function startSwift(): Promise<SwiftServer> {
  const given = process.env.HUBCACHE_TEST_SWIFT_ENDPOINT;
  if (given) {
    if (!(await healthy(given))) {
      throw new Error(`HUBCACHE_TEST_SWIFT_ENDPOINT=${given} does not answer its /healthcheck.`);
    }
    return { endpoint: given.replace(/\/+$/, ""), stop: async () => undefined };
  }
  if (!onPath("swift-proxy-server") || !onPath("memcached")) {
    const message =
      "OpenStack Swift is not installed: run `scripts/swift-s3.sh start DIR PORT` (it installs it from apt) and set HUBCACHE_TEST_SWIFT_ENDPOINT.";
    if (process.env.CI === "true") throw new Error(`CI=true requires the Swift S3 tests. ${message}`);
    return { skip: message };
  }
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "hubcache-swift-"));
  const port = await freePortRange();
  const { stdout } = await run("bash", [SCRIPT, "start", dir, String(port)], { timeout: 120_000 });
  const endpoint = stdout.trim().split("\n").pop() ?? "";
  return {
    endpoint,
    stop: async () => {
      await run("bash", [SCRIPT, "stop", dir, String(port)], { timeout: 60_000 }).catch(() => undefined);
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}
