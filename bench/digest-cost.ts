/**
 * What the integrity record costs on the cold path: extracting the bench archive from a file,
 * in this process, with the per-file CRC-32s and the archive's SHA-256 (`digests: true`, what a
 * resolve does) and without, in pairs of runs. Prints one Markdown row per measure.
 */
import { createReadStream, promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { extractArchive } from "../src/extract/extract.js";
import { countFromEnv, keepResident, median, removeAndSettle, spread } from "./measure.js";

/** One extraction of `archive` into a fresh folder under `root`: wall and CPU (all threads), ms. */
async function extractOnce(
  archive: string,
  root: string,
  name: string,
  digests: boolean,
): Promise<{ wall: number; cpu: number }> {
  const dir = path.join(root, name);
  await fs.mkdir(dir);
  await keepResident([archive]);
  const started = process.cpuUsage();
  const startedAt = performance.now();
  await extractArchive(createReadStream(archive, { highWaterMark: 1 << 16 }), dir, {
    handle: "bench",
    minFreeBytes: 0,
    digests,
  });
  const wall = performance.now() - startedAt;
  const used = process.cpuUsage(started);
  await removeAndSettle(dir);
  return { wall, cpu: (used.user + used.system) / 1000 };
}

/**
 * `pairs` pairs of runs, with and without digests, the order alternating from pair to pair (so
 * neither side always comes first); the cost is the median of the pairs' ratios, as the bench's
 * other ratios are. Its spread on this machine is several per cent either way, hence twenty pairs.
 */
export async function digestCostRows(
  archive: string,
  pairs: number,
): Promise<[string, string, string, string][]> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), "hubcache-digest-cost-"));
  const on: { wall: number; cpu: number }[] = [];
  const off: { wall: number; cpu: number }[] = [];
  try {
    // Not counted: the first extraction in a process loads node-tar and compiles the hot paths, and it
    // would always fall on the first pair's first side.
    await extractOnce(archive, root, "warm-up", true);
    for (let i = 0; i < pairs; i++) {
      const order = i % 2 === 0 ? [true, false] : [false, true];
      for (const digests of order) {
        (digests ? on : off).push(await extractOnce(archive, root, `${i}-${digests}`, digests));
      }
    }
  } finally {
    await fs.rm(root, { recursive: true, force: true });
  }
  const wallRatios = on.map((run, i) => run.wall / (off[i]?.wall ?? NaN));
  const cpuRatios = on.map((run, i) => run.cpu / (off[i]?.cpu ?? NaN));
  const wallRatio = median(wallRatios);
  const ms = (runs: { wall: number; cpu: number }[], key: "wall" | "cpu"): string =>
    `${median(runs.map((run) => run[key])).toFixed(0)} ms`;
  return [
    ["extraction wall time, no digests (median)", ms(off, "wall"), "", ""],
    ["extraction wall time, CRC-32s + SHA-256 (median)", ms(on, "wall"), "", ""],
    [
      `integrity digests' cost (wall time, median of ${pairs} pairs)`,
      `${wallRatio.toFixed(3)}x (${spread(wallRatios)})`,
      "≤ 1.05x",
      wallRatio <= 1.05 ? "yes" : "NO",
    ],
    ["extraction CPU, no digests (median)", ms(off, "cpu"), "", ""],
    ["extraction CPU, CRC-32s + SHA-256 (median)", ms(on, "cpu"), "", ""],
    [
      "integrity digests' cost (CPU, all threads, median of pairs)",
      `${median(cpuRatios).toFixed(3)}x`,
      "",
      "",
    ],
  ];
}

if (process.argv[1] === new URL(import.meta.url).pathname) {
  const archive =
    process.argv[2] && process.argv[2] !== "--json"
      ? process.argv[2]
      : path.resolve(".bench/savedmodel-256mb-v2.tar.gz");
  const rows = await digestCostRows(archive, countFromEnv("BENCH_DIGEST_PAIRS", 20));
  if (process.argv.includes("--json")) console.log(JSON.stringify(rows));
  else for (const row of rows) console.log(`| ${row.join(" | ")} |`);
}
