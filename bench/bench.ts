/**
 * npm run bench: hubcache's cold resolve against `curl -sL URL | tar xzf -` and against Node's bare
 * download + gunzip into a null sink (what a careful hand-written download does), on the same ~256 MB SavedModel-shaped
 * archive served from 127.0.0.1, in alternating runs; peak RSS; warm resolve cost; and one cold
 * resolve of an archive of 200,000 empty files (time and peak RSS).
 * Prints one table with ratios against the baselines measured in the same run.
 */
import { execFileSync, spawn } from "node:child_process";
import { existsSync, promises as fs } from "node:fs";
import path from "node:path";
import zlib from "node:zlib";
import { resolve } from "hubcache";
import * as tar from "tar";
import { realisticWeights, tempDir } from "../test/helpers/fixtures.js";
import { startHubServer } from "../test/helpers/hub-server.js";
import { countFromEnv, median, spread } from "./measure.js";

const RUNS = countFromEnv("BENCH_RUNS", 5);
const DIGEST_PAIRS = countFromEnv("BENCH_DIGEST_PAIRS", 20);
// The mirror's pairs: single pairs range over 2x on this machine, so more than the other rows' runs.
const SERVE_PAIRS = countFromEnv("BENCH_SERVE_PAIRS", 11);
const MODEL_MB = Number(process.env.BENCH_MODEL_MB ?? 256);
const WORK = path.resolve(".bench");
const MODEL_DIR = path.join(WORK, `savedmodel-${MODEL_MB}mb`);
const ARCHIVE = `${MODEL_DIR}-v2.tar.gz`;
const MEMBERS = Number(process.env.BENCH_MEMBERS ?? 200_000);
const MEMBERS_ARCHIVE = path.join(WORK, `members-${MEMBERS}.tar.gz`);

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

/** An archive of MEMBERS empty files, 1,000 to a folder, written header by header (once). */
async function buildMembersArchive(): Promise<void> {
  if (existsSync(MEMBERS_ARCHIVE)) return;
  console.error(`building an archive of ${MEMBERS} empty files (once)...`);
  const header = (name: string, type: "File" | "Directory"): Buffer => {
    const block = Buffer.alloc(512);
    new tar.Header({ path: name, type, size: 0, mode: 0o644, mtime: new Date(0), uid: 0, gid: 0 }).encode(
      block,
    );
    return block;
  };
  const blocks: Buffer[] = [header("./", "Directory")];
  for (let i = 0; i < MEMBERS; i++) {
    if (i % 1000 === 0) blocks.push(header(`./d${i / 1000}/`, "Directory"));
    blocks.push(header(`./d${Math.floor(i / 1000)}/f${i}`, "File"));
  }
  blocks.push(Buffer.alloc(1024));
  await fs.writeFile(`${MEMBERS_ARCHIVE}.part`, zlib.gzipSync(Buffer.concat(blocks), { level: 1 }));
  await fs.rename(`${MEMBERS_ARCHIVE}.part`, MEMBERS_ARCHIVE);
}

/**
 * Warm resolves with last-use tracking against none at all (the touch interval beyond any run), in
 * alternating blocks of 2,000 calls. Before every block the entry's last use is set two hours back,
 * so each block with tracking as shipped (at most once an hour) makes one real touch, as the first
 * hit of each hour does; and, as the worst case, tracking on every hit (interval 0).
 */
async function lastUseCost(
  handle: string,
  cacheDir: string,
): Promise<{ shipped: number[]; everyHit: number[] }> {
  const entry = await resolve(handle, { cacheDir });
  const block = async (touchIntervalMs: number | undefined): Promise<number> => {
    const twoHoursAgo = new Date(Date.now() - 2 * 3_600_000);
    await fs.utimes(entry, twoHoursAgo, twoHoursAgo);
    const started = performance.now();
    for (let i = 0; i < 2000; i++) await resolve(handle, { cacheDir, touchIntervalMs });
    return performance.now() - started;
  };
  const never = Number.MAX_SAFE_INTEGER;
  const pairs = async (touchIntervalMs: number | undefined): Promise<number[]> => {
    const ratios: number[] = [];
    for (let pair = 0; pair < 20; pair++) {
      let withMs: number;
      let withoutMs: number;
      if (pair % 2 === 0) {
        withMs = await block(touchIntervalMs);
        withoutMs = await block(never);
      } else {
        withoutMs = await block(never);
        withMs = await block(touchIntervalMs);
      }
      ratios.push(withMs / withoutMs);
    }
    return ratios;
  };
  return { shipped: await pairs(undefined), everyHit: await pairs(0) };
}

/**
 * The integrity digests' rows (bench/digest-cost.ts), measured in a fresh process, as a resolve runs:
 * by then this one holds the heap and the garbage of everything before (the archives it built, its
 * hub, 10,000-entry caches), and its extractions were 15-20 % slower than a fresh process's, which
 * skews the comparison.
 */
async function digestCostInChild(): Promise<[string, string, string, string][]> {
  const { stdout } = await run(
    process.execPath,
    ["--import", "tsx", "bench/digest-cost.ts", ARCHIVE, "--json"],
    {
      BENCH_DIGEST_PAIRS: String(DIGEST_PAIRS),
    },
  );
  return JSON.parse(stdout) as [string, string, string, string][];
}

function run(
  command: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ ms: number; stdout: string }> {
  return new Promise((done, fail) => {
    const started = performance.now();
    const child = spawn(command, args, {
      stdio: ["ignore", "pipe", "inherit"],
      env: { ...process.env, ...env },
    });
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
  await buildMembersArchive();
  const archiveBytes = (await fs.stat(ARCHIVE)).size;
  const hub = await startHubServer();
  hub.add("/bench/savedmodel/1", { archive: { file: ARCHIVE, size: archiveBytes } });
  const membersBytes = (await fs.stat(MEMBERS_ARCHIVE)).size;
  hub.add("/bench/members/1", { archive: { file: MEMBERS_ARCHIVE, size: membersBytes } });
  const handle = hub.handle("/bench/savedmodel/1");
  const scratch = await tempDir("hubcache-bench-");

  const curlMs: number[] = [];
  const gunzipMs: number[] = [];
  const gunzipRatios: number[] = [];
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
    const gunzip = await run(process.execPath, [
      "bench/gunzip-child.mjs",
      `${handle}?tf-hub-format=compressed`,
    ]);
    const gunzipReport = JSON.parse(gunzip.stdout) as { ms: number };
    lastCache = path.join(scratch, `cache-${i}`);
    const cold = await run(process.execPath, ["bench/cold-child.mjs", handle, lastCache]);
    const report = JSON.parse(cold.stdout) as { ms: number; maxRssMB: number };
    curlMs.push(curl.ms);
    coldWallMs.push(cold.ms);
    coldMs.push(report.ms);
    rssMB.push(report.maxRssMB);
    ratios.push(cold.ms / curl.ms);
    resolveRatios.push(report.ms / curl.ms);
    gunzipMs.push(gunzipReport.ms);
    gunzipRatios.push(report.ms / gunzipReport.ms);
    if (i < RUNS - 1) await fs.rm(lastCache, { recursive: true });
    console.error(
      `run ${i + 1}/${RUNS}: curl|tar ${curl.ms.toFixed(0)} ms, download+gunzip ${gunzipReport.ms.toFixed(0)} ms, hubcache ${cold.ms.toFixed(0)} ms (resolve ${report.ms.toFixed(0)} ms), peak RSS ${report.maxRssMB.toFixed(0)} MB`,
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
  const tracking = await lastUseCost(handle, lastCache);

  const members = await coldMembers(hub.handle("/bench/members/1"), scratch);

  await hub.close();
  await fs.rm(scratch, { recursive: true, force: true });

  const uncompressedMB = MODEL_MB;
  const rows: [string, string, string, string][] = [
    ["measure", "value", "target", "ok"],
    ["archive", `${(archiveBytes / 1e6).toFixed(1)} MB gz → ${uncompressedMB} MiB`, "", ""],
    ["curl -sL | tar xzf (median)", `${median(curlMs).toFixed(0)} ms`, "baseline", ""],
    ["Node download + gunzip to a null sink (median)", `${median(gunzipMs).toFixed(0)} ms`, "baseline", ""],
    ["hubcache cold, whole process (median)", `${median(coldWallMs).toFixed(0)} ms`, "", ""],
    ["hubcache cold, resolve() only (median)", `${median(coldMs).toFixed(0)} ms`, "", ""],
    [
      "cold resolve() vs curl|tar (median of pairs)",
      `${median(resolveRatios).toFixed(3)}x`,
      "≤ 0.50x",
      median(resolveRatios) <= 0.5 ? "yes" : "NO",
    ],
    [
      "cold resolve() vs download + gunzip (median of pairs)",
      `${median(gunzipRatios).toFixed(3)}x`,
      "≤ 1.20x",
      median(gunzipRatios) <= 1.2 ? "yes" : "NO",
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
    [`cold resolve of ${MEMBERS} empty files`, members.time, "", ""],
    [`peak RSS, ${MEMBERS} empty files`, members.rss, "≤ 200 MB", members.rssOk],
    ["warm resolve", `${warmUs.toFixed(1)} µs/call`, "≤ 200 µs", warmUs <= 200 ? "yes" : "NO"],
    ["requests made by warm resolves", String(warmRequests), "0", warmRequests === 0 ? "yes" : "NO"],
    [
      `warm resolve, last-use tracking's cost (median of ${tracking.shipped.length} pairs)`,
      `${median(tracking.shipped).toFixed(3)}x (${spread(tracking.shipped)})`,
      "≤ 1.05x",
      median(tracking.shipped) <= 1.05 ? "yes" : "NO",
    ],
    [
      "warm resolve, a touch on every hit (interval 0; not the default)",
      `${median(tracking.everyHit).toFixed(3)}x (${spread(tracking.everyHit)})`,
      "",
      "",
    ],
  ];
  rows.push(...(await (await import("./manage-bench.js")).manageBenchRows())); // ls, prune of 10,000 entries
  rows.push(...(await digestCostInChild())); // integrity records' cost
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

/** One cold resolve of the many-members archive: its time and peak RSS (or why it failed). */
async function coldMembers(
  handle: string,
  scratch: string,
): Promise<{ time: string; rss: string; rssOk: string }> {
  const cache = path.join(scratch, "cache-members");
  try {
    // The archive holds MEMBERS files plus the folders they sit in: the limit must not be the subject.
    const cold = await run(process.execPath, ["bench/cold-child.mjs", handle, cache, String(MEMBERS * 2)]);
    const report = JSON.parse(cold.stdout) as { ms: number; maxRssMB: number };
    console.error(
      `${MEMBERS} members: resolve ${report.ms.toFixed(0)} ms, peak RSS ${report.maxRssMB.toFixed(0)} MB`,
    );
    return {
      time: `${(report.ms / 1000).toFixed(1)} s`,
      rss: `${report.maxRssMB.toFixed(0)} MB`,
      rssOk: report.maxRssMB <= 200 ? "yes" : "NO",
    };
  } catch (error) {
    return { time: `failed (${(error as Error).message})`, rss: "", rssOk: "NO" };
  } finally {
    await fs.rm(cache, { recursive: true, force: true });
  }
}

await main();
// The sections before leave the disk busy: the removal of 200,000 files, and this machine's root is
// ext4 mounted with `discard`, whose trims go out with the journal's commits. Flushed first, so the
// mirror's short runs do not pay for them (as they do not when serve-bench.ts runs alone).
execFileSync("sync");
await (await import("./serve-bench.js")).serveBench(ARCHIVE, SERVE_PAIRS);
