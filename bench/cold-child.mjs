// One cold resolve in a fresh process (compiled library, no TypeScript loader):
// prints {"ms": resolve() wall ms, "maxRssMB": peak RSS of the process}.
// A third argument sets maxFiles (HUBCACHE_MAX_FILES), for archives with many members.
import { readFileSync } from "node:fs";
import { resolve } from "hubcache";

/**
 * Peak RSS of this process's own memory. getrusage's maxRSS (process.resourceUsage) also counts the
 * pages this process shared with its parent between fork and exec, so a large parent (the bench,
 * after building its archives) would be reported as the child's peak; /proc's VmHWM is this
 * program's alone.
 */
function peakRssMB() {
  try {
    const kB = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync("/proc/self/status", "utf8"))?.[1];
    if (kB !== undefined) return Number(kB) / 1024;
  } catch {
    // not Linux: fall back to getrusage
  }
  return process.resourceUsage().maxRSS / 1024;
}

const [handle, cacheDir, maxFiles] = process.argv.slice(2);
if (!handle || !cacheDir) throw new Error("usage: cold-child.mjs HANDLE CACHE_DIR [MAX_FILES]");
const started = performance.now();
await resolve(handle, { cacheDir, ...(maxFiles ? { maxFiles: Number(maxFiles) } : {}) });
const ms = performance.now() - started;
console.log(JSON.stringify({ ms, maxRssMB: peakRssMB() }));
