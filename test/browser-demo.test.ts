/**
 * The browser demo (demo/browser) in headless Chromium, set up as `npm run demo:browser` sets it
 * up: the first load says the model came from the network, a reload and a second load say it came
 * from the browser's storage, and the model ran both times.
 */
import assert from "node:assert/strict";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import type { BrowserContext } from "playwright-core";
import { type PageServer, chromiumSkip, launchChromium, startPageServer } from "./helpers/chromium.js";
import { movenetModelDir, tempDir } from "./helpers/fixtures.js";
import { type HubServer, startHubServer } from "./helpers/hub-server.js";

const MOVENET = "/google/tfjs-model/movenet/singlepose/lightning/4";
const DEMO = path.resolve(import.meta.dirname, "..", "demo", "browser");

let hub: HubServer;
let pages: PageServer;
let context: BrowserContext;

describe("the browser demo page (headless Chromium)", { skip: chromiumSkip() }, () => {
  before(async () => {
    hub = await startHubServer({ cors: true });
    hub.add(MOVENET, { archive: Buffer.alloc(0), dir: await movenetModelDir() });
    pages = await startPageServer(
      {},
      { "/": path.join(DEMO, "index.html"), "/demo.js": path.join(DEMO, "demo.js") },
    );
    context = await launchChromium(await tempDir("chromium-profile-"));
  });
  after(async () => {
    await context?.close();
    await Promise.all([pages?.close(), hub?.close()]);
  });

  test(
    "first load from the network, after a reload from the browser's storage",
    { timeout: 120_000 },
    async () => {
      const page = await context.newPage();
      const problems: string[] = [];
      page.on("pageerror", (error) => problems.push(String(error)));
      await page.goto(`${pages.origin}/?${new URLSearchParams({ handle: hub.handle(MOVENET) })}`);
      const loadAndRead = async (): Promise<{ status: string; result: string; models: string }> => {
        await page.click("#load");
        await page.waitForFunction(
          () =>
            document.getElementById("result")!.textContent !== "" &&
            !(document.getElementById("load") as HTMLButtonElement).disabled,
          null,
          { timeout: 90_000 },
        );
        const text = (id: string): Promise<string> => page.locator(`#${id}`).innerText();
        return { status: await text("status"), result: await text("result"), models: await text("models") };
      };
      const first = await loadAndRead();
      assert.match(first.status, /^Loaded from the network in \d+ ms: 4,808,206 bytes, now kept/);
      assert.match(first.result, /^Ran it in \d+ ms: 17 keypoints, best score 0\.\d+\.$/);
      assert.match(first.models, new RegExp(`${hub.handle(MOVENET)}\\s+4,808,206`));
      const requests = hub.requests.length;
      await page.reload();
      const second = await loadAndRead();
      assert.match(second.status, /^Loaded from the browser’s storage \(no request\) in \d+ ms/);
      assert.equal(second.result.replace(/\d+ ms/, ""), first.result.replace(/\d+ ms/, ""));
      assert.equal(hub.requests.length, requests);
      assert.deepEqual(problems, []);
    },
  );
});
