import { resolve } from "hubcache";
const cacheDir = process.argv[2],
  handle = process.argv[3];
for (let i = 0; i < 2000; i++) await resolve(handle, { cacheDir });
const t = performance.now();
const n = 20000;
for (let i = 0; i < n; i++) await resolve(handle, { cacheDir });
console.log((((performance.now() - t) * 1000) / n).toFixed(1), "us/call");
