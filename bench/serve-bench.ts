/**
 * The mirror's part of `npm run bench`: a fresh client's cold resolve through a warm
 * `hubcache serve` (which hands a hubcache client the files form: the list of the model's files
 * with their CRC-32s, then each file fetched in parallel, nothing to inflate or parse) against a
 * direct cold resolve from the hub in the same run, and the mirror's throughput for 16 concurrent
 * clients (plain tar, as any other client gets it).
 */
import { spawn } from "node:child_process";
import { promises as fs } from "node:fs";
import http from "node:http";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { savedModelDir, tarGz, tempDir } from "../test/helpers/fixtures.js";
import { startHubServer } from "../test/helpers/hub-server.js";
import { startMirror } from "../test/helpers/mirror.js";
import { countFromEnv, keepResident, median, removeAndSettle, spread } from "./measure.js";

const HANDLE = "https://tfhub.dev/bench/savedmodel/1";

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
    // Each run's 256 MB are removed and let settle before the next run starts (measure.ts), and the
    // order alternates, so neither side always comes first.
    // Before every run, of either side, both sources are read into memory (measure.ts): a warm
    // mirror and a hub whose archive is in memory, whatever the kernel did since their last run.
    const sources = [archive, path.join(scratch, "mirror")];
    const timed = async (handle: string, cacheDir: string, env?: Record<string, string>): Promise<number> => {
      await keepResident(sources);
      const ms = await coldResolve(handle, cacheDir, env);
      await removeAndSettle(cacheDir);
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
        `${ratio.toFixed(3)}x (${spread(ratios)})`,
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

// Alone (`node --import tsx bench/serve-bench.ts`): the archive BENCH_ARCHIVE names (npm run bench
// keeps its 256 MB one in .bench/), or else a smaller model built on the spot.
if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  let archive = process.env.BENCH_ARCHIVE;
  if (!archive) {
    const dir = await savedModelDir(Number(process.env.BENCH_MODEL_MB ?? 32) << 20);
    archive = `${dir}.tar.gz`;
    await fs.writeFile(archive, await tarGz(dir));
  }
  await serveBench(archive, countFromEnv("BENCH_SERVE_PAIRS", 11));
}
