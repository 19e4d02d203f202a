/**
 * Cache management rows for `npm run bench` (bench/bench.ts calls manageBenchRows): `ls` and
 * `prune` of a 10,000-entry cache that removes its least recently used tenth (targets: ls ≤ 1 s,
 * prune ≤ 5 s). The cache is made directly in
 * hubcache's layout (a folder of one file, its descriptor and its record per entry), so building it
 * takes seconds rather than 10,000 downloads.
 */
import { promises as fs } from "node:fs";
import path from "node:path";
import { handleHash, listEntries, pruneCache } from "hubcache";
import { descriptorText } from "../src/cache/layout.js";
import { tempDir } from "../test/helpers/fixtures.js";

const ENTRIES = Number(process.env.BENCH_MANAGE_ENTRIES ?? 10_000);

async function buildCache(count: number): Promise<string> {
  const cacheDir = await tempDir("hubcache-manage-bench-");
  const started = Date.now() - count * 1000;
  for (let i = 0; i < count; i++) {
    const handle = `https://tfhub.dev/bench/model-${i}/1`;
    const dir = path.join(cacheDir, handleHash(handle));
    await fs.mkdir(dir);
    await fs.writeFile(path.join(dir, "saved_model.pb"), "x".repeat(1000));
    const when = new Date(started + i * 1000); // entry i was last used i seconds after entry 0
    await fs.utimes(dir, when, when);
    const stat = await fs.stat(dir);
    await fs.writeFile(`${dir}.descriptor.txt`, descriptorText(handle, when));
    await fs.utimes(`${dir}.descriptor.txt`, when, when);
    const record = {
      version: 1,
      handle,
      createdAt: when.toISOString(),
      bytes: 1000,
      archiveBytes: 200,
      files: [{ path: "saved_model.pb", size: 1000, crc32: "00000000" }],
      dev: stat.dev,
      ino: stat.ino,
      birthtimeMs: stat.birthtimeMs,
    };
    await fs.writeFile(`${dir}.hubcache.json`, JSON.stringify(record));
  }
  return cacheDir;
}

export async function manageBenchRows(): Promise<[string, string, string, string][]> {
  const cacheDir = await buildCache(ENTRIES);
  try {
    let started = performance.now();
    const listing = await listEntries({ cacheDir, sort: "used" });
    const lsMs = performance.now() - started;
    if (listing.entries.length !== ENTRIES) throw new Error(`listed ${listing.entries.length} entries`);
    started = performance.now();
    // A prune evicts the least recently used tenth (1,000 of 10,000 entries) to get under its cap.
    const pruned = await pruneCache({ cacheDir, maxBytes: listing.totalBytes * 0.9 });
    const pruneMs = performance.now() - started;
    if (pruned.removed.length !== ENTRIES / 10) throw new Error(`pruned ${pruned.removed.length} entries`);
    const n = ENTRIES.toLocaleString("en-US");
    return [
      [`ls of a ${n}-entry cache`, `${lsMs.toFixed(0)} ms`, "≤ 1000 ms", lsMs <= 1000 ? "yes" : "NO"],
      [
        `prune of a ${n}-entry cache (LRU tenth removed)`,
        `${pruneMs.toFixed(0)} ms`,
        "≤ 5000 ms",
        pruneMs <= 5000 ? "yes" : "NO",
      ],
    ];
  } finally {
    await fs.rm(cacheDir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const row of await manageBenchRows()) console.log(row.join(" | "));
}
