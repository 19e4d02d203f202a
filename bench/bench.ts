/**
 * npm run bench: hubcache's cold resolve against `curl -sL URL | tar xzf -` on the same ~256 MB
 * SavedModel-shaped archive served from 127.0.0.1, in alternating runs; peak RSS; warm resolve cost.
 * Prints one table with ratios against the baseline measured in the same run.
 */
import { execFileSync, spawn } from "node:child_process";
import { existsSync, promises as fs } from "node:fs";
import path from "node:path";
import { resolve } from "hubcache";
import { realisticWeights, tempDir } from "../test/helpers/fixtures.js";
import { startHubServer } from "../test/helpers/hub-server.js";

const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const MODEL_MB = Number(process.env.BENCH_MODEL_MB ?? 256);
const WORK = path.resolve(".bench");
const MODEL_DIR = path.join(WORK, `savedmodel-${MODEL_MB}mb`);
const ARCHIVE = `${MODEL_DIR}-v2.tar.gz`;

async function buildModel(): Promise<void> {
  if (existsSync(ARCHIVE)) return;
  console.error(`building a ${MODEL_MB} MB SavedModel-shaped model with realistic float32 weights (once)...`);
  await fs.rm(MODEL_DIR, { recursive: true, force: true });
  await fs.mkdir(path.join(MODEL_DIR, "variables"), { recursive: true });
  await fs.mkdir(path.join(MODEL_DIR, "assets"), { recursive: true });
  await fs.writeFile(path.join(MODEL_DIR, "saved_model.pb"), realisticWeights(2 << 20, 7));
  await fs.writeFile(path.join(MODEL_DIR, "fingerprint.pb"), "fingerprint");
  await fs.writeFile(path.join(MODEL_DIR, "variables", "variables.index"), realisticWeights(64 << 10));
  const shards = 4;
  const shardBytes = Math.floor(((MODEL_MB - 2) << 20) / shards);
  for (let i = 0; i < shards; i++) {
    const name = `variables.data-${String(i).padStart(5, "0")}-of-${String(shards).padStart(5, "0")}`;
    const weights = realisticWeights(shardBytes, i);
    await fs.writeFile(path.join(MODEL_DIR, "variables", name), weights);
  }
  await fs.writeFile(path.join(MODEL_DIR, "assets", "vocab.txt"), "a\nb\n".repeat(1000));
  execFileSync("tar", ["-cz", "--owner=0", "--group=0", "-f", `${ARCHIVE}.part`, "-C", MODEL_DIR, "."]);
  await fs.rename(`${ARCHIVE}.part`, ARCHIVE);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[mid] ?? 0) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}

function run(command: string, args: string[]): Promise<{ ms: number; stdout: string }> {
  return new Promise((done, fail) => {
    const started = performance.now();
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "inherit"] });
    let stdout = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.on("error", fail);
    child.on("close", (code) =>
      code === 0
        ? done({ ms: performance.now() - started, stdout })
        : fail(new Error(`${command} exited ${code}`)),
    );
  });
}

async function main(): Promise<void> {
  await fs.mkdir(WORK, { recursive: true });
  await buildModel();
  const archiveBytes = (await fs.stat(ARCHIVE)).size;
  const hub = await startHubServer();
  hub.add("/bench/savedmodel/1", { archive: { file: ARCHIVE, size: archiveBytes } });
  const handle = hub.handle("/bench/savedmodel/1");
  const scratch = await tempDir("hubcache-bench-");

  const curlMs: number[] = [];
  const coldMs: number[] = [];
  const coldWallMs: number[] = [];
  const rssMB: number[] = [];
  const ratios: number[] = [];
  const resolveRatios: number[] = [];
  let lastCache = "";
  for (let i = 0; i < RUNS; i++) {
    const out = path.join(scratch, `curl-${i}`);
    await fs.mkdir(out);
    const curl = await run("bash", [
      "-c",
      `curl -sL '${handle}?tf-hub-format=compressed' | tar xzf - -C '${out}'`,
    ]);
    await fs.rm(out, { recursive: true });
    lastCache = path.join(scratch, `cache-${i}`);
    const cold = await run(process.execPath, ["bench/cold-child.mjs", handle, lastCache]);
    const report = JSON.parse(cold.stdout) as { ms: number; maxRssMB: number };
    curlMs.push(curl.ms);
    coldWallMs.push(cold.ms);
    coldMs.push(report.ms);
    rssMB.push(report.maxRssMB);
    ratios.push(cold.ms / curl.ms);
    resolveRatios.push(report.ms / curl.ms);
    if (i < RUNS - 1) await fs.rm(lastCache, { recursive: true });
    console.error(
      `run ${i + 1}/${RUNS}: curl|tar ${curl.ms.toFixed(0)} ms, hubcache ${cold.ms.toFixed(0)} ms (resolve ${report.ms.toFixed(0)} ms), peak RSS ${report.maxRssMB.toFixed(0)} MB`,
    );
  }

  // Warm: the entry from the last cold run, resolved in this process.
  const requestsBefore = hub.requests.length;
  for (let i = 0; i < 200; i++) await resolve(handle, { cacheDir: lastCache });
  const calls = 20000;
  const started = performance.now();
  for (let i = 0; i < calls; i++) await resolve(handle, { cacheDir: lastCache });
  const warmUs = ((performance.now() - started) * 1000) / calls;
  const warmRequests = hub.requests.length - requestsBefore;

  await hub.close();
  await fs.rm(scratch, { recursive: true, force: true });

  const uncompressedMB = MODEL_MB;
  const rows: [string, string, string, string][] = [
    ["measure", "value", "target", "ok"],
    ["archive", `${(archiveBytes / 1e6).toFixed(1)} MB gz → ${uncompressedMB} MiB`, "", ""],
    ["curl -sL | tar xzf (median)", `${median(curlMs).toFixed(0)} ms`, "baseline", ""],
    ["hubcache cold, whole process (median)", `${median(coldWallMs).toFixed(0)} ms`, "", ""],
    ["hubcache cold, resolve() only (median)", `${median(coldMs).toFixed(0)} ms`, "", ""],
    [
      "cold resolve() vs curl|tar (median of pairs)",
      `${median(resolveRatios).toFixed(3)}x`,
      "≤ 0.50x",
      median(resolveRatios) <= 0.5 ? "yes" : "NO",
    ],
    [
      "cold whole process vs curl|tar (median of pairs)",
      `${median(ratios).toFixed(3)}x`,
      "≤ 0.50x",
      median(ratios) <= 0.5 ? "yes" : "NO",
    ],
    [
      "peak RSS, cold (max)",
      `${Math.max(...rssMB).toFixed(0)} MB`,
      "≤ 200 MB",
      Math.max(...rssMB) <= 200 ? "yes" : "NO",
    ],
    ["warm resolve", `${warmUs.toFixed(1)} µs/call`, "≤ 200 µs", warmUs <= 200 ? "yes" : "NO"],
    ["requests made by warm resolves", String(warmRequests), "0", warmRequests === 0 ? "yes" : "NO"],
  ];
  rows.push(...(await (await import("./manage-bench.js")).manageBenchRows())); // ls, prune of 10,000 entries
  // A "|" inside a cell would end it ("curl | tar"): Markdown wants it escaped.
  const table = rows.map((row) => row.map((cell) => cell.replace(/\|/g, "\\|")));
  const widths = [0, 1, 2, 3].map((c) => Math.max(...table.map((r) => r[c]?.length ?? 0)));
  const line = (r: string[]): string => `| ${r.map((cell, c) => cell.padEnd(widths[c] ?? 0)).join(" | ")} |`;
  console.log(line(table[0] ?? []));
  console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
  for (const row of table.slice(1)) console.log(line(row));
  console.log(
    `\n${RUNS} alternating runs on ${process.platform}/${process.arch}, node ${process.version}, ${(await import("node:os")).cpus().length} cores.`,
  );
}

await main();
