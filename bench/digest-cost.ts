/**
 * What the integrity record costs on the cold path: extracting the bench archive from a file,
 * in this process, with the per-file CRC-32s and the archive's SHA-256 (`digests: true`, what a
 * resolve does) and without, in alternating runs. Prints one Markdown row per measure.
 */
import { createReadStream, promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { extractArchive } from "../src/extract/extract.js";

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
}

export async function digestCostRows(
  archive: string,
  runs: number,
): Promise<[string, string, string, string][]> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), "hubcache-digest-cost-"));
  const times = { on: [] as number[], off: [] as number[] };
  const wall = { on: [] as number[], off: [] as number[] };
  try {
    for (let i = 0; i < runs * 2; i++) {
      const digests = i % 2 === 0;
      const dir = path.join(root, String(i));
      await fs.mkdir(dir);
      const started = process.cpuUsage();
      const startedAt = performance.now();
      await extractArchive(createReadStream(archive, { highWaterMark: 1 << 16 }), dir, {
        handle: "bench",
        minFreeBytes: 0,
        digests,
      });
      const used = process.cpuUsage(started);
      (digests ? wall.on : wall.off).push(performance.now() - startedAt);
      (digests ? times.on : times.off).push((used.user + used.system) / 1000);
      await fs.rm(dir, { recursive: true, force: true });
    }
  } finally {
    await fs.rm(root, { recursive: true, force: true });
  }
  const ratio = median(times.on) / median(times.off);
  const wallRatio = median(wall.on) / median(wall.off);
  return [
    ["extraction wall time, no digests (median)", `${median(wall.off).toFixed(0)} ms`, "", ""],
    ["extraction wall time, CRC-32s + SHA-256 (median)", `${median(wall.on).toFixed(0)} ms`, "", ""],
    [
      "integrity digests' cost (wall time ratio)",
      `${wallRatio.toFixed(3)}x`,
      "≤ 1.05x",
      wallRatio <= 1.05 ? "yes" : "NO",
    ],
    ["extraction CPU, no digests (median)", `${median(times.off).toFixed(0)} ms`, "", ""],
    ["extraction CPU, CRC-32s + SHA-256 (median)", `${median(times.on).toFixed(0)} ms`, "", ""],
    ["integrity digests' cost (CPU ratio, all threads)", `${ratio.toFixed(3)}x`, "", ""],
  ];
}

if (process.argv[1] === new URL(import.meta.url).pathname) {
  const archive = process.argv[2] ?? path.resolve(".bench/savedmodel-256mb-v2.tar.gz");
  for (const row of await digestCostRows(archive, Number(process.env.BENCH_RUNS ?? 5))) {
    console.log(`| ${row.join(" | ")} |`);
  }
}
