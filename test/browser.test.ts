/**
 * hubcache/browser in a real headless Chromium: a page on one 127.0.0.1 origin loads TF.js from
 * script tags and dist/browser.js, and reads real models (movenet, a graph model; the upscaler, a
 * layers model) from the local stand-in hub on another origin, with TF Hub's file protocol. One
 * browser per test file; its profile persists, so a relaunch is the "second page load".
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { BrowserContext, Page } from "playwright-core";
import {
  chromiumSkip,
  launchChromium,
  openHarness,
  secondWaitsForFirst,
  type PageServer,
  startPageServer,
} from "./helpers/chromium.js";
import { movenetModelDir, tempDir, upscalerModelDir } from "./helpers/fixtures.js";
import { type HubServer, startHubServer } from "./helpers/hub-server.js";
import { maxAbsDiff } from "./helpers/tfjs.js";

const LIMIT = { timeout: 120_000 };
const FIRST_CONV =
  "StatefulPartitionedCall/center_net_mobile_net_v2fpn_feature_extractor/model_1/model/Conv1_relu/Relu6";
const MOVENET = "/google/tfjs-model/movenet/singlepose/lightning/4";
const UPSCALER = "/models/upscalerjs/default-model/tfJs/default/1";
const MOVENET_BYTES = 4_650_216;

interface Loaded {
  ok: boolean;
  values?: number[];
  events: { type: string; [key: string]: unknown }[];
  lastLoad?: { from: string; bytes: number; fetchedBytes: number; stored: boolean };
  error?: { name: string; code: string; message: string };
}

type Harness = Record<string, (...args: unknown[]) => Promise<unknown>>;

/** Call `window.harness[name](...args)` in the page. */
function call<T>(page: Page, name: string, ...args: unknown[]): Promise<T> {
  return page.evaluate(([fn, rest]) => (window as unknown as { harness: Harness }).harness[fn]!(...rest), [
    name,
    args,
  ] as const) as Promise<T>;
}

let hub: HubServer;
let pages: PageServer;
let profile: string;
let context: BrowserContext;
let page: Page;
const problems: string[] = [];

/** Requests the hub saw for one model's files (the `?tfjs-format=file` reads, not the storage hops). */
const hubReads = (modelPath: string): string[] =>
  hub.requests.filter((r) => r.path.startsWith(`${modelPath}/`)).map((r) => r.url);

async function relaunch(): Promise<void> {
  await context?.close();
  context = await launchChromium(profile);
  page = await openHarness(context, pages.origin, problems);
}

describe("hubcache/browser in headless Chromium", { skip: chromiumSkip() }, () => {
  before(async () => {
    hub = await startHubServer({ cors: true });
    const movenet = await movenetModelDir();
    const upscaler = await upscalerModelDir();
    for (const [modelPath, dir] of [
      [MOVENET, movenet],
      [UPSCALER, upscaler],
      ["/acme/tfjs-model/two-tabs/1", movenet],
      ["/acme/tfjs-model/damaged/1", upscaler],
      ["/acme/tfjs-model/quota/1", movenet],
    ] as const) {
      hub.add(modelPath, { archive: Buffer.alloc(0), dir });
    }
    pages = await startPageServer({ movenet, upscaler });
    profile = await tempDir("chromium-profile-");
    await relaunch();
  });
  after(async () => {
    await context?.close();
    await pages?.close();
    await hub?.close();
  });

  test("the graph model's ModelArtifacts are TF.js's http loader's, field for field", LIMIT, async () => {
    const { ours, theirs } = await call<{ ours: unknown; theirs: unknown }>(
      page,
      "artifacts",
      hub.handle(MOVENET),
      `${pages.origin}/direct/movenet/model.json`,
    );
    assert.deepEqual(ours, theirs);
    assert.deepEqual(hubReads(MOVENET), [
      `${MOVENET}/model.json?tfjs-format=file`,
      `${MOVENET}/group1-shard1of1.bin?tfjs-format=file`,
    ]);
  });

  test("graph model (movenet): the same outputs as TF.js loading the files directly", LIMIT, async () => {
    const loaded = await call<Loaded>(page, "load", "graph", hub.handle(MOVENET), {}, FIRST_CONV);
    assert.ok(loaded.ok, JSON.stringify(loaded.error));
    assert.equal(loaded.lastLoad?.from, "storage", "stored by the previous test's load");
    const direct = await call<number[]>(
      page,
      "direct",
      "graph",
      `${pages.origin}/direct/movenet/model.json`,
      FIRST_CONV,
    );
    assert.equal(direct.length, 96 * 96 * 32);
    assert.ok(direct.some((v) => v !== 0));
    assert.equal(maxAbsDiff(loaded.values!, direct), 0);
  });

  test(
    "layers model (upscaler): downloaded once, stored, the same outputs as TF.js's own load",
    LIMIT,
    async () => {
      const loaded = await call<Loaded>(page, "load", "layers", hub.handle(UPSCALER));
      assert.ok(loaded.ok, JSON.stringify(loaded.error));
      assert.deepEqual(loaded.lastLoad, { ...loaded.lastLoad, from: "network", stored: true });
      const types = loaded.events.map((e) => e.type);
      assert.ok(types.includes("download-start") && types.includes("stored"), types.join());
      const last = loaded.events.filter((e) => e.type === "progress").at(-1)!;
      assert.deepEqual(
        [last.done, last.loadedBytes, last.totalBytes],
        [true, loaded.lastLoad.bytes, loaded.lastLoad.bytes],
      );
      const direct = await call<number[]>(
        page,
        "direct",
        "layers",
        `${pages.origin}/direct/upscaler/model.json`,
      );
      assert.equal(direct.length, 8 * 8 * 3);
      assert.equal(maxAbsDiff(loaded.values!, direct), 0);
    },
  );

  test("a second page load with the same profile makes no request to the hub", LIMIT, async () => {
    const before = hub.requests.length;
    await relaunch();
    const models = await call<{ handle: string; bytes: number; storedAt: number; lastUsed: number }[]>(
      page,
      "cachedModels",
    );
    assert.deepEqual(models.map((m) => m.handle).sort(), [hub.handle(UPSCALER), hub.handle(MOVENET)].sort());
    const movenet = models.find((m) => m.handle === hub.handle(MOVENET))!;
    assert.ok(movenet.bytes > MOVENET_BYTES && movenet.lastUsed >= movenet.storedAt);
    for (const [kind, modelPath, node] of [
      ["graph", MOVENET, "weights"],
      ["layers", UPSCALER, undefined],
    ] as const) {
      const loaded = await call<Loaded>(page, "load", kind, hub.handle(modelPath), {}, node);
      assert.ok(loaded.ok, JSON.stringify(loaded.error));
      assert.equal(loaded.lastLoad?.from, "storage");
      assert.equal(loaded.lastLoad?.fetchedBytes, 0);
      assert.deepEqual(
        loaded.events.map((e) => e.type),
        ["cache-hit"],
      );
    }
    assert.equal(hub.requests.length, before, "no request reached the hub");
  });

  test("two tabs loading the same uncached model download it once", LIMIT, async () => {
    const modelPath = "/acme/tfjs-model/two-tabs/1";
    const second = await openHarness(context, pages.origin, problems);
    try {
      // The first tab stops at its first fetch, holding the model's lock, until the second waits.
      const [a, b] = await secondWaitsForFirst(
        page,
        "test-gate:two-tabs",
        (gate) =>
          call<Loaded>(page, "load", "graph", hub.handle(modelPath), { gateFirstFetch: gate }, "weights"),
        () => call<Loaded>(second, "load", "graph", hub.handle(modelPath), {}, "weights"),
      );
      assert.ok(a.ok && b.ok, JSON.stringify([a.error, b.error]));
      assert.equal(a.lastLoad?.from, "network");
      assert.equal(b.lastLoad?.from, "storage");
      assert.ok(
        b.events.some((e) => e.type === "lock-wait"),
        "the second tab waited for the first",
      );
      assert.deepEqual(a.values, b.values);
      assert.ok(a.values!.length > 100);
      assert.deepEqual(hubReads(modelPath), [
        `${modelPath}/model.json?tfjs-format=file`,
        `${modelPath}/group1-shard1of1.bin?tfjs-format=file`,
      ]);
    } finally {
      await second.close();
    }
  });

  test("a damaged or partly stored copy is detected, removed and fetched again", LIMIT, async () => {
    const modelPath = "/acme/tfjs-model/damaged/1";
    const handle = hub.handle(modelPath);
    assert.equal((await call<Loaded>(page, "load", "layers", handle)).lastLoad?.from, "network");
    for (const [file, how, reason] of [
      ["group1-shard1of1.bin", "flip", /group1-shard1of1\.bin is damaged/],
      ["model.json", "flip", /model\.json is damaged/],
      [".hubcache-complete.json", "drop", /partly stored/],
      ["group1-shard1of1.bin", "drop", /group1-shard1of1\.bin is missing/],
    ] as const) {
      await call(page, "damage", handle, file, how);
      const reads = hubReads(modelPath).length;
      const again = await call<Loaded>(page, "load", "layers", handle);
      assert.ok(again.ok, JSON.stringify(again.error));
      assert.equal(again.lastLoad?.from, "network", `${file} ${how}`);
      const invalid = again.events.find((e) => e.type === "cache-invalid");
      assert.match(String(invalid?.reason), reason);
      assert.equal(hubReads(modelPath).length, reads + 2, "model.json and the shard fetched again");
      assert.equal((await call<Loaded>(page, "load", "layers", handle)).lastLoad?.from, "storage");
    }
    // verify: "size" trusts same-size bytes; the default sha-256 check is what catches them.
    await call(page, "damage", handle, "group1-shard1of1.bin", "flip");
    const sizeOnly = await call<Loaded>(page, "load", "layers", handle, { verify: "size" });
    assert.equal(sizeOnly.lastLoad?.from, "storage");
    assert.equal((await call<Loaded>(page, "load", "layers", handle)).lastLoad?.from, "network");
  });

  test(
    "over quota: the model still loads, nothing of it is stored, the app gets an event",
    LIMIT,
    async () => {
      const modelPath = "/acme/tfjs-model/quota/1";
      const handle = hub.handle(modelPath);
      const cdp = await context.newCDPSession(page);
      const storage = await call<Record<string, string[]>>(page, "storage");
      const usage = Object.keys(storage).length;
      assert.ok(usage >= 3, "other models are stored");
      try {
        // The quota check (estimate) refuses, and the browser's own write refusal (QuotaExceededError).
        for (const checkQuota of [true, false]) {
          const { usage: used } = await call<{ usage: number }>(page, "estimate");
          await cdp.send("Storage.overrideQuotaForOrigin", {
            origin: pages.origin,
            quotaSize: used + 1_000_000,
          });
          const loaded = await call<Loaded>(page, "load", "graph", handle, { checkQuota }, "weights");
          assert.ok(loaded.ok, JSON.stringify(loaded.error));
          assert.deepEqual(loaded.lastLoad, { ...loaded.lastLoad, from: "network", stored: false });
          const failed = loaded.events.find((e) => e.type === "store-failed");
          assert.equal(failed?.reason, "quota", JSON.stringify(failed));
          assert.equal(failed?.code, "ERR_HUBCACHE_DISK_FULL");
          const after = await call<Record<string, string[]>>(page, "storage");
          assert.deepEqual(
            Object.keys(after).sort(),
            Object.keys(storage).sort(),
            "nothing of it was left behind",
          );
          assert.ok(loaded.values!.length > 100, "the model loaded");
        }
      } finally {
        await cdp.send("Storage.overrideQuotaForOrigin", { origin: pages.origin });
        await cdp.detach();
      }
    },
  );

  test("removeModel and clearModels remove what was stored; the next load fetches again", LIMIT, async () => {
    const handle = hub.handle(UPSCALER);
    assert.equal(await call(page, "removeModel", `${handle}/`), true, "the canonical handle is removed");
    assert.equal(await call(page, "removeModel", handle), false);
    const left = await call<{ handle: string }[]>(page, "cachedModels");
    assert.ok(!left.some((m) => m.handle === handle));
    const reads = hubReads(UPSCALER).length;
    assert.equal((await call<Loaded>(page, "load", "layers", handle)).lastLoad?.from, "network");
    assert.equal(hubReads(UPSCALER).length, reads + 2);
    assert.ok((await call<number>(page, "clearModels")) >= 4);
    assert.deepEqual(await call(page, "cachedModels"), []);
    assert.deepEqual(await call(page, "storage"), {});
    assert.deepEqual(problems, []);
  });
});
