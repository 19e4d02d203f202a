/**
 * hubcache/browser from a bundler: an app importing "hubcache/browser" and TF.js by package name,
 * bundled by esbuild (the package's "exports" resolve it to dist/browser.js), runs in headless
 * Chromium with no script tags and no global `tf`.
 */
import assert from "node:assert/strict";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { build } from "esbuild";
import type { BrowserContext } from "playwright-core";
import { type PageServer, chromiumSkip, launchChromium, startPageServer } from "./helpers/chromium.js";
import { movenetModelDir, tempDir } from "./helpers/fixtures.js";
import { type HubServer, startHubServer } from "./helpers/hub-server.js";

const MOVENET = "/google/tfjs-model/movenet/singlepose/lightning/4";

let hub: HubServer;
let pages: PageServer;
let context: BrowserContext;
let bundle: string;

describe(
  "hubcache/browser bundled with TF.js by esbuild (headless Chromium)",
  { skip: chromiumSkip() },
  () => {
    before(async () => {
      hub = await startHubServer({ cors: true });
      hub.add(MOVENET, { archive: Buffer.alloc(0), dir: await movenetModelDir() });
      bundle = path.join(await tempDir("bundled-app-"), "app.js");
      const result = await build({
        entryPoints: [path.resolve(import.meta.dirname, "browser-pages", "bundled-app.js")],
        outfile: bundle,
        bundle: true,
        format: "esm",
        platform: "browser",
        metafile: true,
        logLevel: "silent",
      });
      const inputs = Object.keys(result.metafile.inputs);
      assert.ok(
        inputs.some((file) => file.endsWith("dist/browser.js")),
        "hubcache/browser resolved to dist/browser.js",
      );
      pages = await startPageServer(
        {},
        {
          "/app.js": bundle,
          "/app.html": path.resolve(import.meta.dirname, "browser-pages", "bundled-app.html"),
        },
      );
      context = await launchChromium(await tempDir("chromium-profile-"));
    });
    after(async () => {
      await context?.close();
      await Promise.all([pages?.close(), hub?.close()]);
    });

    test(
      "the bundled app loads a graph model through ioHandler, then from storage",
      { timeout: 120_000 },
      async () => {
        const page = await context.newPage();
        const problems: string[] = [];
        page.on("pageerror", (error) => problems.push(String(error)));
        await page.goto(`${pages.origin}/app.html`);
        await page.waitForFunction(
          () => (window as unknown as { bundledReady?: boolean }).bundledReady === true,
        );
        const load = (): Promise<{ weights: number; from: string; hasGlobalTf: boolean }> =>
          page.evaluate(
            (handle) =>
              (
                window as unknown as {
                  loadBundled: (
                    h: string,
                  ) => Promise<{ weights: number; from: string; hasGlobalTf: boolean }>;
                }
              ).loadBundled(handle),
            hub.handle(MOVENET),
          );
        const first = await load();
        assert.deepEqual(
          { ...first, weights: first.weights > 100 },
          { weights: true, from: "network", hasGlobalTf: false },
        );
        const reads = hub.requests.length;
        assert.equal((await load()).from, "storage");
        assert.equal(hub.requests.length, reads);
        assert.deepEqual(problems, []);
      },
    );
  },
);
