// One cold resolve in a fresh process (compiled library, no TypeScript loader):
// prints {"ms": resolve() wall ms, "maxRssMB": peak RSS of the process}.
// A third argument sets maxFiles (HUBCACHE_MAX_FILES), for archives with many members.
import { resolve } from "hubcache";

const [handle, cacheDir, maxFiles] = process.argv.slice(2);
if (!handle || !cacheDir) throw new Error("usage: cold-child.mjs HANDLE CACHE_DIR [MAX_FILES]");
const started = performance.now();
await resolve(handle, { cacheDir, ...(maxFiles ? { maxFiles: Number(maxFiles) } : {}) });
const ms = performance.now() - started;
console.log(JSON.stringify({ ms, maxRssMB: process.resourceUsage().maxRSS / 1024 }));
