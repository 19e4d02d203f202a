/**
 * TF.js in a real headless Chromium, on a page of another origin, loading a model through
 * `hubcache serve` with `tf.loadGraphModel(url, { fromTFHub: true })`, unchanged: its outputs
 * must be those of TF.js loading the same files from disk in Node.
 */
import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { load } from "hubcache";
import { chromiumSkip, launchChromium, startPageServer } from "./helpers/chromium.js";
import { movenetModelDir, tarGz } from "./helpers/fixtures.js";
import { type HubServer, startHubServer } from "./helpers/hub-server.js";
import { startMirror } from "./helpers/mirror.js";
import { tempDir } from "./helpers/fixtures.js";
import { input, maxAbsDiff, run, useBackend } from "./helpers/tfjs.js";

const FIRST_CONV =
  "StatefulPartitionedCall/center_net_mobile_net_v2fpn_feature_extractor/model_1/model/Conv1_relu/Relu6";

// The same deterministic input as test/helpers/tfjs.ts `input([1, 192, 192, 3], "int32", 255)`.
const PAGE = `<!DOCTYPE html><html><head><meta charset="utf-8">
<script src="/tf/tf-core.min.js"></script>
<script src="/tf/tf-backend-cpu.min.js"></script>
<script src="/tf/tf-converter.min.js"></script>
<script>
window.runModel = async (url, node) => {
  await tf.setBackend("cpu");
  const model = await tf.loadGraphModel(url, { fromTFHub: true });
  const shape = [1, 192, 192, 3];
  let seed = 2654435761;
  const values = Array.from({ length: 192 * 192 * 3 }, () => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed % 256;
  });
  const x = tf.tensor(values, shape, "int32");
  const y = model.execute(x, node);
  return Array.from(await y.data());
};
</script></head><body>hubcache mirror test page</body></html>`;

let hub: HubServer;
let movenetDir: string;
before(async () => {
  hub = await startHubServer();
  movenetDir = await movenetModelDir();
  hub.add("/google/movenet/1", { archive: await tarGz(movenetDir), dir: movenetDir });
});
after(() => hub.close());

describe("TF.js in headless Chromium through hubcache serve", { skip: chromiumSkip() }, () => {
  test(
    "loadGraphModel(mirror URL, {fromTFHub: true}) from another origin gives Node's outputs",
    { timeout: 180_000 },
    async () => {
      const mirror = await startMirror([
        "--cache-dir",
        await tempDir(),
        "--upstream",
        `tfhub.dev=${hub.origin}`,
      ]);
      const pageFile = path.join(await tempDir("serve-page-"), "index.html");
      await fs.writeFile(pageFile, PAGE);
      const pages = await startPageServer({}, { "/": pageFile });
      const browser = await launchChromium(await tempDir("serve-profile-"));
      try {
        const page = await browser.newPage();
        const problems: string[] = [];
        page.on("pageerror", (error) => problems.push(String(error)));
        page.on("requestfailed", (request) =>
          problems.push(`${request.url()}: ${request.failure()?.errorText}`),
        );
        await page.goto(`${pages.origin}/`);
        assert.notEqual(
          new URL(pages.origin).port,
          new URL(mirror.origin).port,
          "the page is on another origin",
        );
        const modelUrl = `${mirror.origin}/tfhub.dev/google/movenet/1`;
        const fromBrowser: number[] = await page.evaluate(
          ([url, node]) =>
            (window as unknown as { runModel: (u: string, n: string) => Promise<number[]> }).runModel(
              url,
              node,
            ),
          [modelUrl, FIRST_CONV] as const,
        );
        assert.deepEqual(problems, []);

        await useBackend("cpu");
        const fromDisk = await load(movenetDir);
        const x = input([1, 192, 192, 3], "int32", 255);
        const expected = await run(fromDisk, x, FIRST_CONV);
        assert.equal(fromBrowser.length, 96 * 96 * 32);
        assert.ok(maxAbsDiff(fromBrowser, expected) <= 1e-5, `max diff ${maxAbsDiff(fromBrowser, expected)}`);
        assert.ok(fromBrowser.some((v) => v !== 0));
        x.dispose();

        const log = mirror.run.stderr();
        assert.match(log, /"GET \/tfhub\.dev\/google\/movenet\/1\/model\.json\?tfjs-format=file" 200/);
        assert.match(
          log,
          /"GET \/tfhub\.dev\/google\/movenet\/1\/group1-shard1of1\.bin\?tfjs-format=file" 200/,
        );
        assert.equal(hub.downloads().length, 1, "the mirror downloaded the archive once");
      } finally {
        await browser.close();
        await pages.close();
        await mirror.stop();
      }
    },
  );
});
