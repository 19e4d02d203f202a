/**
 * Real headless Chromium for the browser tests: Debian's /usr/bin/chromium driven by playwright-core
 * (which never downloads a browser), with a persistent profile so Cache Storage survives a relaunch
 * (the "second page load"). Pages come from a static server on 127.0.0.1 that also serves TF.js's
 * UMD bundles from node_modules, hubcache's browser bundle (dist/browser.js) and model folders.
 */
import { existsSync, promises as fs } from "node:fs";
import path from "node:path";
import { type BrowserContext, type Page, chromium } from "playwright-core";
import { packageDir } from "./fixtures.js";
import { type LocalServer, type RequestRecord, startLocalServer } from "./local-server.js";
import { until } from "./wait.js";

export const CHROMIUM = process.env.HUBCACHE_TEST_CHROMIUM ?? "/usr/bin/chromium";

/** The skip reason when there is no Chromium here (scripts/test-all.sh installs Debian's package). */
export function chromiumSkip(): string | false {
  return existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM} (apt-get install -y chromium)`;
}

/** A headless Chromium whose storage lives in `profileDir`, kept between launches. */
export async function launchChromium(profileDir: string, extraArgs: string[] = []): Promise<BrowserContext> {
  return chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      ...extraArgs,
    ],
  });
}

/** TF.js's UMD bundles (they define the global `tf`), by the name the pages load them under. */
export function tfjsBundles(): Record<string, string> {
  const bundle = (pkg: string, file: string): string => path.join(packageDir(pkg), "dist", file);
  return {
    "/tf/tf-core.min.js": bundle("@tensorflow/tfjs-core", "tf-core.min.js"),
    "/tf/tf-backend-cpu.min.js": bundle("@tensorflow/tfjs-backend-cpu", "tf-backend-cpu.min.js"),
    "/tf/tf-converter.min.js": bundle("@tensorflow/tfjs-converter", "tf-converter.min.js"),
    "/tf/tf-layers.min.js": bundle("@tensorflow/tfjs-layers", "tf-layers.min.js"),
  };
}

const REPO = path.resolve(import.meta.dirname, "..", "..");

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".json": "application/json",
  ".map": "application/json",
};

export interface PageServer {
  origin: string;
  requests: RequestRecord[];
  close(): Promise<void>;
}

/**
 * Static pages: `/pages/<file>` from test/browser-pages, `/hubcache/browser.js` (and its map) from
 * dist/, `/tf/*.js` (tfjsBundles), `/direct/<name>/<file>` from `folders[name]` (a plain static model
 * folder, for TF.js's own loader), and any extra `files` (URL path → file).
 */
export async function startPageServer(
  folders: Record<string, string> = {},
  files: Record<string, string> = {},
  options: { port?: number } = {},
): Promise<PageServer> {
  const fixed: Record<string, string> = {
    ...tfjsBundles(),
    "/hubcache/browser.js": path.join(REPO, "dist", "browser.js"),
    "/hubcache/browser.js.map": path.join(REPO, "dist", "browser.js.map"),
    ...files,
  };
  const locate = (pathname: string): string | undefined => {
    if (fixed[pathname]) return fixed[pathname];
    const parts = pathname.split("/").filter(Boolean);
    if (parts.some((p) => p === ".." || p.includes("\\"))) return undefined;
    if (parts[0] === "pages" && parts.length >= 2) {
      return path.join(REPO, "test", "browser-pages", ...parts.slice(1));
    }
    const folder = parts[0] === "direct" ? folders[parts[1] ?? ""] : undefined;
    return folder && parts.length >= 3 ? path.join(folder, ...parts.slice(2)) : undefined;
  };
  const server: LocalServer = await startLocalServer(async (req, res, record) => {
    const file = locate(decodeURIComponent(record.path));
    const bytes = file === undefined ? undefined : await fs.readFile(file).catch(() => undefined);
    if (bytes === undefined) {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found");
      return;
    }
    res.writeHead(200, {
      "content-type": TYPES[path.extname(file!)] ?? "application/octet-stream",
      "content-length": String(bytes.length),
      "cache-control": "no-store",
    });
    res.end(bytes);
  }, options);
  return { origin: server.origin, requests: server.requests, close: () => server.close() };
}

/** Open the test harness page (TF.js + hubcache loaded, `window.hubcache` set) in a new tab. */
export async function openHarness(
  context: BrowserContext,
  origin: string,
  problems: string[],
): Promise<Page> {
  const page = await context.newPage();
  page.on("pageerror", (error) => problems.push(`pageerror: ${String(error)}`));
  await page.goto(`${origin}/pages/harness.html`);
  await page.waitForFunction(() => (window as unknown as { harnessReady?: boolean }).harnessReady === true);
  return page;
}

/** `window.harness[name](...args)` in `page` (test/browser-pages/harness.js). */
function harnessCall<T>(page: Page, name: string, ...args: unknown[]): Promise<T> {
  type Harness = Record<string, (...rest: unknown[]) => Promise<unknown>>;
  return page.evaluate(([fn, rest]) => (window as unknown as { harness: Harness }).harness[fn]!(...rest), [
    name,
    args,
  ] as const) as Promise<T>;
}

/**
 * Two loads of one uncached model, in a fixed order with no timing: the first is started with
 * `gateFirstFetch: gate` and stops at its first fetch, holding the model's Web Lock, on a gate (a
 * Web Lock) the test holds; the second starts only once the first is seen there, and the gate opens
 * only once the second is seen waiting on the model's lock (`page` sees the origin's locks: every
 * tab and worker). The gate opens even when a wait fails, so no load stays blocked.
 */
export async function secondWaitsForFirst<T, U>(
  page: Page,
  gate: string,
  first: (gate: string) => Promise<T>,
  second: () => Promise<U>,
): Promise<[T, U]> {
  const pending = async (): Promise<string[]> =>
    (await harnessCall<{ pending: string[] }>(page, "locks")).pending;
  await harnessCall(page, "closeGate", gate);
  const one = first(gate);
  let two: Promise<U> | undefined;
  try {
    await until(async () => (await pending()).includes(gate), "the first load at its first fetch");
    two = second();
    await until(
      async () => (await pending()).some((name) => name.startsWith("hubcache:")),
      "the second load waiting for the model's lock",
    );
  } finally {
    await harnessCall(page, "openGate", gate);
  }
  return Promise.all([one, two]);
}
