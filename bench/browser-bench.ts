/**
 * npm run bench:browser — hubcache/browser in headless Chromium (Debian's /usr/bin/chromium):
 *  1. Cache Storage against OPFS: write and read time for a few MB of weights, and what each does
 *     when the origin's quota is too small (the numbers behind docs/browser.md's choice);
 *  2. a real model (movenet, 4.6 MB of weights) on a page: first and second page load (the second
 *     in a relaunched browser with the same profile), and the bytes the hub sent on the second.
 * Prints Markdown tables.
 */
import { promises as fs } from "node:fs";
import path from "node:path";
import type { Page } from "playwright-core";
import { chromiumSkip, launchChromium, openHarness, startPageServer } from "../test/helpers/chromium.js";
import { movenetModelDir, tempDir } from "../test/helpers/fixtures.js";
import { startHubServer } from "../test/helpers/hub-server.js";
import { countFromEnv, median } from "./measure.js";

const RUNS = countFromEnv("BENCH_RUNS", 5);
const MB = Number(process.env.BENCH_STORAGE_MB ?? 8);
const MOVENET = "/google/tfjs-model/movenet/singlepose/lightning/4";

interface StorageTimes {
  cacheWrite: number;
  cacheRead: number;
  opfsWrite: number;
  opfsRead: number;
}

type BenchModule = {
  measureStorage(mb: number): Promise<StorageTimes>;
  quotaBehaviour(): Promise<Record<string, string>>;
};

const BENCH_MODULE = "/pages/storage-bench.js";

/** Cache Storage against OPFS, measured in the page by test/browser-pages/storage-bench.js. */
function measureStorage(page: Page, mb: number): Promise<StorageTimes> {
  return page.evaluate(async ([url, size]) => ((await import(url)) as BenchModule).measureStorage(size), [
    BENCH_MODULE,
    mb,
  ] as const);
}

function quotaBehaviour(page: Page): Promise<Record<string, string>> {
  return page.evaluate(async (url) => ((await import(url)) as BenchModule).quotaBehaviour(), BENCH_MODULE);
}

async function storageBench(origin: string): Promise<void> {
  const context = await launchChromium(await tempDir("bench-profile-"));
  try {
    const page = await openHarness(context, origin, []);
    // A fresh profile first: the quota behaviour, then the timings.
    const cdp = await context.newCDPSession(page);
    const { usage } = await page.evaluate(() => navigator.storage.estimate());
    await cdp.send("Storage.overrideQuotaForOrigin", { origin, quotaSize: (usage ?? 0) + (4 << 20) });
    const quota = await quotaBehaviour(page);
    await cdp.send("Storage.overrideQuotaForOrigin", { origin });
    console.log(
      `\nAn 8 MB write under a quota of usage + 4 MB: Cache Storage: ${quota.cache}. OPFS: ${quota.opfs}.`,
    );
    const runs: StorageTimes[] = [];
    for (let i = 0; i < RUNS; i++) runs.push(await measureStorage(page, MB));
    const m = (key: keyof StorageTimes): string => `${median(runs.map((r) => r[key])).toFixed(0)} ms`;
    console.log(`\n### Cache Storage against OPFS: ${MB} MB in 4 files, median of ${RUNS}\n`);
    console.log("| storage | write | read |\n|---|---|---|");
    console.log(`| Cache Storage | ${m("cacheWrite")} | ${m("cacheRead")} |`);
    console.log(`| OPFS (createWritable) | ${m("opfsWrite")} | ${m("opfsRead")} |`);
  } finally {
    await context.close();
  }
}

interface PageLoad {
  /** From navigation to the model loaded in TF.js. */
  ms: number;
  /** hubcache's IOHandler load() alone. */
  loadMs: number;
  from: string;
}

/** 5 MB/s down, 40 ms latency: a good home connection (Chromium's own network emulation). */
const SLOW = { offline: false, latency: 40, downloadThroughput: 5_000_000, uploadThroughput: 1_000_000 };

/** Open the harness page and load movenet through hubcache (no run): the times and the source. */
async function pageLoad(profile: string, origin: string, handle: string, slow: boolean): Promise<PageLoad> {
  const context = await launchChromium(profile);
  try {
    const page = await context.newPage();
    if (slow) await (await context.newCDPSession(page)).send("Network.emulateNetworkConditions", SLOW);
    const started = performance.now();
    await page.goto(`${origin}/pages/harness.html`);
    await page.waitForFunction(() => (window as unknown as { harnessReady?: boolean }).harnessReady === true);
    const result = (await page.evaluate(
      (h) =>
        (window as unknown as { harness: { load: (...a: unknown[]) => Promise<unknown> } }).harness.load(
          "graph",
          h,
          {},
          "count",
        ),
      handle,
    )) as { ok: boolean; lastLoad?: { from: string; ms: number } };
    if (!result.ok) throw new Error(JSON.stringify(result));
    return {
      ms: performance.now() - started,
      loadMs: result.lastLoad?.ms ?? NaN,
      from: result.lastLoad?.from ?? "?",
    };
  } finally {
    await context.close();
  }
}

type Hub = Awaited<ReturnType<typeof startHubServer>>;

async function pageLoadBench(origin: string, hub: Hub, sizes: Map<string, number>): Promise<void> {
  const total = [...sizes.values()].reduce((a, b) => a + b, 0);
  console.log(`\n### movenet (${total} bytes) on a page, headless Chromium, median of ${RUNS}\n`);
  console.log("| network | page load | page to model ready | IOHandler load() | bytes from the hub |");
  console.log("|---|---|---|---|---|");
  for (const slow of [false, true]) {
    const rows = { first: [] as PageLoad[], second: [] as PageLoad[], bytes: [] as number[] };
    for (let i = 0; i < RUNS; i++) {
      const profile = await tempDir("bench-profile-");
      const handle = `${hub.origin}${MOVENET}`;
      rows.first.push(await pageLoad(profile, origin, handle, slow));
      const before = hub.requests.length;
      const again = await pageLoad(profile, origin, handle, slow);
      if (again.from !== "storage") throw new Error(`the second load came from ${again.from}`);
      rows.second.push(again);
      const served = hub.requests.slice(before).filter((r) => r.path.startsWith("/file-storage/"));
      rows.bytes.push(served.reduce((sum, r) => sum + (sizes.get(path.basename(r.path)) ?? 0), 0));
      await fs.rm(profile, { recursive: true, force: true });
    }
    const net = slow ? "emulated 5 MB/s, 40 ms" : "loopback";
    const ms = (loads: PageLoad[], key: "ms" | "loadMs"): string =>
      `${median(loads.map((l) => l[key])).toFixed(0)} ms`;
    console.log(
      `| ${net} | first (empty profile) | ${ms(rows.first, "ms")} | ${ms(rows.first, "loadMs")} | ${total} |`,
    );
    console.log(
      `| ${net} | second (relaunched, same profile) | ${ms(rows.second, "ms")} | ${ms(rows.second, "loadMs")} | ${Math.max(...rows.bytes)} |`,
    );
  }
}

async function main(): Promise<void> {
  const skip = chromiumSkip();
  if (skip) throw new Error(skip);
  const movenet = await movenetModelDir();
  const sizes = new Map<string, number>();
  for (const name of await fs.readdir(movenet)) {
    sizes.set(name, (await fs.stat(path.join(movenet, name))).size);
  }
  const hub = await startHubServer({ cors: true });
  hub.add(MOVENET, { archive: Buffer.alloc(0), dir: movenet });
  const pages = await startPageServer();
  try {
    await storageBench(pages.origin);
    await pageLoadBench(pages.origin, hub, sizes);
  } finally {
    await pages.close();
    await hub.close();
  }
}

await main();
