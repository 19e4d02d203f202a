// One cold resolve in a fresh process (compiled library, no TypeScript loader):
// prints {"ms": resolve() wall ms, "maxRssMB": peak RSS of the process}.
import { resolve } from "hubcache";

const [handle, cacheDir] = process.argv.slice(2);
if (!handle || !cacheDir) throw new Error("usage: cold-child.mjs HANDLE CACHE_DIR");
const started = performance.now();
await resolve(handle, { cacheDir });
const ms = performance.now() - started;
console.log(JSON.stringify({ ms, maxRssMB: process.resourceUsage().maxRSS / 1024 }));
