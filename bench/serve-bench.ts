/**
 * The mirror's part of `npm run bench`: a fresh client's cold resolve through a warm
 * `hubcache serve` (which hands a hubcache client the files form: the list of the model's files
 * with their CRC-32s, then each file fetched in parallel, nothing to inflate or parse) against a
 * direct cold resolve from the hub in the same run, and the mirror's throughput for 16 concurrent
 * clients (plain tar, as any other client gets it).
 */
import { execFileSync, spawn } from "node:child_process";
import { promises as fs } from "node:fs";
import http from "node:http";
import path from "node:path";
import { setTimeout } from "node:timers/promises";
import { pathToFileURL } from "node:url";
import { savedModelDir, tarGz, tempDir } from "../test/helpers/fixtures.js";
import { startHubServer } from "../test/helpers/hub-server.js";
import { startMirror } from "../test/helpers/mirror.js";

const HANDLE = "https://tfhub.dev/bench/savedmodel/1";
const SETTLE_MS = 300;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[mid] ?? 0) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}

/** One cold resolve in a fresh process (bench/cold-child.mjs); the resolve() wall time, ms. */
function coldResolve(handle: string, cacheDir: string, env: Record<string, string> = {}): Promise<number> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, ["bench/cold-child.mjs", handle, cacheDir], {
      stdio: ["ignore", "pipe", "inherit"],
      env: { ...process.env, ...env },
    });
    let stdout = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.on("error", fail);
    child.on("close", (code) =>
      code === 0
        ? done((JSON.parse(stdout) as { ms: number }).ms)
        : fail(new Error(`cold-child exited ${code}`)),
    );
  });
}

/** Bytes of one plain-tar read of the model from the mirror, discarded as they arrive. */
function readArchive(url: string): Promise<number> {
  return new Promise((done, fail) => {
    http
      .get(url, { agent: false, headers: { "accept-encoding": "identity" } }, (res) => {
        let bytes = 0;
        res.on("data", (chunk: Buffer) => (bytes += chunk.length));
        res.on("end", () =>
          res.statusCode === 200 ? done(bytes) : fail(new Error(`HTTP ${res.statusCode}`)),
        );
        res.on("error", fail);
      })
      .on("error", fail);
  });
}

export async function serveBench(archive: string, runs: number): Promise<void> {
  const hub = await startHubServer();
  hub.add("/bench/savedmodel/1", { archive: { file: archive, size: (await fs.stat(archive)).size } });
  const scratch = await tempDir("hubcache-serve-bench-");
  const mirror = await startMirror([
    "--cache-dir",
    path.join(scratch, "mirror"),
    "--upstream",
    `tfhub.dev=${hub.origin}`,
  ]);
  try {
    await coldResolve(HANDLE, path.join(scratch, "warm-up"), { HUBCACHE_MIRROR: mirror.origin });
    const ratios: number[] = [];
    const direct: number[] = [];
    const through: number[] = [];
    // Each run's 256 MB are removed before the next run starts (else the next one pays for their
    // writeback), then synced and let settle, as in digest-cost.ts (the removal's journal commit and
    // freeing the page cache otherwise fall into the next run at random); the order alternates, so
    // neither side always comes first.
    const timed = async (handle: string, cacheDir: string, env?: Record<string, string>): Promise<number> => {
      const ms = await coldResolve(handle, cacheDir, env);
      await fs.rm(cacheDir, { recursive: true });
      execFileSync("sync");
      await setTimeout(SETTLE_MS);
      return ms;
    };
    for (let i = 0; i < runs; i++) {
      const hubRun = (): Promise<number> =>
        timed(hub.handle("/bench/savedmodel/1"), path.join(scratch, `direct-${i}`));
      const mirrorRun = (): Promise<number> =>
        timed(HANDLE, path.join(scratch, `client-${i}`), { HUBCACHE_MIRROR: mirror.origin });
      let fromHub: number;
      let fromMirror: number;
      if (i % 2 === 0) {
        fromHub = await hubRun();
        fromMirror = await mirrorRun();
      } else {
        fromMirror = await mirrorRun();
        fromHub = await hubRun();
      }
      direct.push(fromHub);
      through.push(fromMirror);
      ratios.push(fromMirror / fromHub);
      console.error(
        `serve run ${i + 1}/${runs}: direct ${fromHub.toFixed(0)} ms, through the mirror ${fromMirror.toFixed(0)} ms`,
      );
    }
    const started = performance.now();
    const url = `${mirror.origin}/tfhub.dev/bench/savedmodel/1?tf-hub-format=compressed`;
    const bytes = (await Promise.all(Array.from({ length: 16 }, () => readArchive(url)))).reduce(
      (a, b) => a + b,
      0,
    );
    const seconds = (performance.now() - started) / 1000;
    const ratio = median(ratios);
    const mirrorDownloads = hub.downloads().length - runs;
    const rows = [
      ["measure", "value", "target", "ok"],
      ["cold resolve, direct from the hub (median)", `${median(direct).toFixed(0)} ms`, "baseline", ""],
      ["cold resolve through a warm mirror (median)", `${median(through).toFixed(0)} ms`, "", ""],
      [
        "through the mirror vs direct (median of pairs)",
        `${ratio.toFixed(3)}x (${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)})`,
        "≤ 0.35x",
        ratio <= 0.35 ? "yes" : "NO",
      ],
      [
        "mirror, 16 concurrent clients (plain tar)",
        `${(bytes / 1e6 / seconds).toFixed(0)} MB/s in ${seconds.toFixed(1)} s`,
        "",
        "",
      ],
      [
        // The direct runs download from the hub themselves; all the mirror's clients cost one.
        "upstream downloads by the mirror, for all of it",
        String(mirrorDownloads),
        "1",
        mirrorDownloads === 1 ? "yes" : "NO",
      ],
    ];
    const widths = [0, 1, 2, 3].map((c) => Math.max(...rows.map((r) => r[c]?.length ?? 0)));
    const line = (r: string[]): string =>
      `| ${r.map((cell, c) => cell.padEnd(widths[c] ?? 0)).join(" | ")} |`;
    console.log(`\n${line(rows[0] ?? [])}`);
    console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
    for (const row of rows.slice(1)) console.log(line(row));
  } finally {
    await mirror.stop();
    await hub.close();
    await fs.rm(scratch, { recursive: true, force: true });
  }
}

// Alone (`node --import tsx bench/serve-bench.ts`): a smaller model built on the spot.
if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  // BENCH_ARCHIVE: an archive already built (npm run bench keeps its 256 MB one in .bench/).
  let archive = process.env.BENCH_ARCHIVE;
  if (!archive) {
    const dir = await savedModelDir(Number(process.env.BENCH_MODEL_MB ?? 32) << 20);
    archive = `${dir}.tar.gz`;
    await fs.writeFile(archive, await tarGz(dir));
  }
  await serveBench(archive, Number(process.env.BENCH_SERVE_PAIRS ?? 11));
}
