/**
 * hubcache/browser in headless Chromium: reading through a mirror (a stand-in speaking `hubcache
 * serve`'s file scheme with a token and digests, and the real `hubcache serve` when this checkout
 * has it), the coded errors, and workers sharing one download with the pages of the origin.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, promises as fs } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import type { BrowserContext, Page } from "playwright-core";
import {
  type PageServer,
  chromiumSkip,
  launchChromium,
  openHarness,
  secondWaitsForFirst,
  startPageServer,
} from "./helpers/chromium.js";
import { movenetModelDir, tarGz, tempDir, upscalerModelDir } from "./helpers/fixtures.js";
import { type HubServer, startHubServer } from "./helpers/hub-server.js";
import { type LocalServer, startLocalServer } from "./helpers/local-server.js";
import { startCli, waitUntil } from "./helpers/processes.js";

const LIMIT = { timeout: 120_000 };
const TOKEN = "s3cret-token";
const UPSCALER = "/models/upscalerjs/default-model/tfJs/default/1";

interface Result {
  ok: boolean;
  events: { type: string; [key: string]: unknown }[];
  lastLoad?: { from: string; bytes: number; fetchedBytes: number; stored: boolean };
  weightBytes?: number;
  targetEvents?: unknown[];
  error?: { name: string; code: string; message: string };
}

type Harness = Record<string, (...args: unknown[]) => Promise<unknown>>;

function call<T>(page: Page, name: string, ...args: unknown[]): Promise<T> {
  return page.evaluate(([fn, rest]) => (window as unknown as { harness: Harness }).harness[fn]!(...rest), [
    name,
    args,
  ] as const) as Promise<T>;
}

/**
 * A stand-in for `hubcache serve`'s file reads: `/<host>/<path>/<file>?tfjs-format=file`, only with
 * `Authorization: Bearer TOKEN`, CORS with preflights, and a Repr-Digest (sha-256) on every file —
 * a wrong one for models whose path holds "bad-digest".
 */
async function startStandInMirror(folders: Record<string, string>): Promise<LocalServer> {
  return startLocalServer(async (req, res, record) => {
    const cors = {
      "access-control-allow-origin": "*",
      "access-control-expose-headers": "ETag, Content-Length, Repr-Digest",
    };
    if (req.method === "OPTIONS") {
      res.writeHead(204, { ...cors, "access-control-allow-headers": "Authorization" }).end();
      return;
    }
    if (req.headers.authorization !== `Bearer ${TOKEN}`) {
      res.writeHead(401, cors).end("token needed");
      return;
    }
    const cut = record.path.lastIndexOf("/");
    const folder = folders[record.path.slice(0, cut)];
    const bytes = folder
      ? await fs.readFile(path.join(folder, record.path.slice(cut + 1))).catch(() => undefined)
      : undefined;
    if (!bytes || !record.url.endsWith("?tfjs-format=file")) {
      res.writeHead(404, cors).end("no such file");
      return;
    }
    const digest = createHash("sha256")
      .update(record.path.includes("bad-digest") ? Buffer.from("other bytes") : bytes)
      .digest("base64");
    res
      .writeHead(200, { ...cors, "repr-digest": `sha-256=:${digest}:`, etag: `"${bytes.length}"` })
      .end(bytes);
  });
}

let hub: HubServer;
let mirror: LocalServer;
let pages: PageServer;
let context: BrowserContext;
let page: Page;
let upscaler: string;
let movenet: string;
const problems: string[] = [];

describe(
  "hubcache/browser through mirrors, errors and workers (headless Chromium)",
  { skip: chromiumSkip() },
  () => {
    before(async () => {
      upscaler = await upscalerModelDir();
      movenet = await movenetModelDir();
      const short = await upscalerModelDir();
      await fs.truncate(path.join(short, "group1-shard1of1.bin"), 888_300 - 1000);
      hub = await startHubServer({ cors: true });
      hub.add(UPSCALER, { archive: Buffer.alloc(0), dir: upscaler });
      hub.add("/acme/tfjs-model/short-shard/1", { archive: Buffer.alloc(0), dir: short });
      hub.add("/acme/tfjs-model/workers/1", { archive: Buffer.alloc(0), dir: movenet });
      hub.add("/acme/tfjs-model/abort/1", { archive: Buffer.alloc(0), dir: movenet });
      mirror = await startStandInMirror({
        "/tfhub.dev/google/tfjs-model/upscaler/1": upscaler,
        "/tfhub.dev/google/tfjs-model/bad-digest/1": upscaler,
      });
      pages = await startPageServer();
      context = await launchChromium(await tempDir("chromium-profile-"));
      page = await openHarness(context, pages.origin, problems);
    });
    after(async () => {
      await context?.close();
      await Promise.all([pages?.close(), mirror?.close(), hub?.close()]);
    });

    test(
      "through a mirror with its token: the mirror's file scheme, stored, then no request",
      LIMIT,
      async () => {
        const handle = "https://tfhub.dev/google/tfjs-model/upscaler/1";
        const options = { mirror: `${mirror.origin}/`, token: TOKEN };
        const first = await call<Result>(page, "artifactsOnly", handle, { ...options, persist: true });
        assert.ok(first.ok, JSON.stringify(first.error));
        assert.deepEqual(first.targetEvents, first.events, "the EventTarget sees what onEvent sees");
        assert.ok(
          first.events.some((e) => e.type === "persist"),
          "persist: true asked the browser",
        );
        assert.equal(first.weightBytes, 888_300);
        assert.deepEqual(first.lastLoad, { ...first.lastLoad, from: "network", stored: true });
        const reads = mirror.requests.filter((r) => r.method === "GET");
        assert.deepEqual(
          reads.map((r) => r.url),
          [
            "/tfhub.dev/google/tfjs-model/upscaler/1/model.json?tfjs-format=file",
            "/tfhub.dev/google/tfjs-model/upscaler/1/group1-shard1of1.bin?tfjs-format=file",
          ],
        );
        assert.ok(reads.every((r) => r.headers.authorization === `Bearer ${TOKEN}`));
        const before = mirror.requests.length;
        const second = await call<Result>(page, "artifactsOnly", handle, options);
        assert.equal(second.lastLoad?.from, "storage");
        assert.equal(mirror.requests.length, before);
      },
    );

    test(
      "the coded errors: 401, a digest mismatch, 404, a short weight file, abort, a bad handle",
      LIMIT,
      async () => {
        const viaMirror = { mirror: mirror.origin, token: TOKEN };
        const cases: [string, Record<string, unknown>, string, RegExp][] = [
          [
            "https://tfhub.dev/google/tfjs-model/upscaler/2",
            { mirror: mirror.origin },
            "ERR_HUBCACHE_UNAUTHORIZED",
            /401/,
          ],
          [
            "https://tfhub.dev/google/tfjs-model/bad-digest/1",
            viaMirror,
            "ERR_HUBCACHE_CORRUPT",
            /sha-256 digest/,
          ],
          [hub.handle("/acme/tfjs-model/missing/1"), {}, "ERR_HUBCACHE_NOT_FOUND", /404/],
          [hub.handle("/acme/tfjs-model/short-shard/1"), {}, "ERR_HUBCACHE_INVALID_MODEL", /887300 bytes/],
          [hub.handle("/acme/tfjs-model/abort/1"), { abortAfterMs: 0 }, "ERR_HUBCACHE_ABORTED", /aborted/],
          ["tfhub.dev/google/x/1", {}, "ERR_HUBCACHE_INVALID_HANDLE", /not an http\(s\) model URL/],
        ];
        const storedBefore = await call<Record<string, string[]>>(page, "storage");
        for (const [handle, options, code, message] of cases) {
          const result = await call<Result>(page, "artifactsOnly", handle, options);
          assert.equal(result.ok, false, handle);
          assert.equal(result.error?.name, "HubcacheError", handle);
          assert.equal(result.error?.code, code, `${handle}: ${result.error?.message}`);
          assert.match(result.error.message, message);
        }
        assert.deepEqual(await call(page, "storage"), storedBefore, "no failed load stored anything");
      },
    );

    test("workers share the pages' storage and lock: two workers, one download", LIMIT, async () => {
      const modelPath = "/acme/tfjs-model/workers/1";
      const handle = hub.handle(modelPath);
      // Worker A stops at its first fetch, under the model's lock, until worker B waits for it.
      const [a, b] = await secondWaitsForFirst(
        page,
        "test-gate:workers",
        (gate) => call<Result>(page, "artifactsOnly", handle, { gateFirstFetch: gate }, true),
        () => call<Result>(page, "artifactsOnly", handle, {}, true),
      );
      assert.ok(a.ok && b.ok, JSON.stringify([a.error, b.error]));
      assert.deepEqual([a.lastLoad?.from, b.lastLoad?.from], ["network", "storage"]);
      assert.ok(b.events.some((e) => e.type === "lock-wait"));
      assert.equal(a.weightBytes, 4_650_216);
      assert.equal(b.weightBytes, 4_650_216);
      const reads = hub.requests.filter((r) => r.path.startsWith(`${modelPath}/`));
      assert.equal(reads.length, 2, "model.json and the shard, once");
      const fromPage = await call<Result>(page, "artifactsOnly", handle, {});
      assert.equal(fromPage.lastLoad?.from, "storage");
      assert.deepEqual(problems, []);
    });

    test(
      "in an insecure context (no Cache Storage): loads from the network, says it kept nothing",
      LIMIT,
      async () => {
        // http://insecure.test is not a secure context; Chromium maps the name to 127.0.0.1.
        const insecure = await launchChromium(await tempDir("chromium-profile-"), [
          "--host-resolver-rules=MAP insecure.test 127.0.0.1",
        ]);
        try {
          const origin = pages.origin.replace("127.0.0.1", "insecure.test");
          const other = await openHarness(insecure, origin, problems);
          assert.equal(await other.evaluate(() => window.isSecureContext), false);
          const result = await call<Result>(other, "artifactsOnly", hub.handle(UPSCALER), {});
          assert.ok(result.ok, JSON.stringify(result.error));
          assert.deepEqual(result.lastLoad, { ...result.lastLoad, from: "network", stored: false });
          const failed = result.events.find((e) => e.type === "store-failed");
          assert.deepEqual([failed?.reason, failed?.code], ["unavailable", "ERR_HUBCACHE_UNSUPPORTED"]);
        } finally {
          await insecure.close();
        }
      },
    );

    // HUBCACHE_TEST_SERVE_CLI: another checkout's bin/hubcache.js that has `serve` (before a merge).
    const serveCli = process.env.HUBCACHE_TEST_SERVE_CLI;
    const serveAvailable =
      serveCli !== undefined ||
      existsSync(path.resolve(import.meta.dirname, "..", "src", "serve", "server.ts"));
    test(
      "through the real `hubcache serve` (with --token and --cors): loads, stores, then no request",
      { ...LIMIT, skip: serveAvailable ? false : "this checkout has no hubcache serve (src/serve)" },
      async () => {
        const run = startCli(
          [
            "serve",
            "--port",
            "0",
            "--cache-dir",
            await tempDir(),
            "--upstream",
            `tfhub.dev=${hub.origin}`,
            "--token",
            TOKEN,
            "--cors",
            pages.origin,
          ],
          serveCli === undefined ? {} : { cli: serveCli },
        );
        try {
          let stdout = "";
          run.child.stdout?.on("data", (chunk: Buffer | string) => (stdout += String(chunk)));
          await waitUntil(() => stdout.includes("\n"), "serve's first line", 30_000);
          const origin = /listening on (http:\/\/\S+)/.exec(stdout)?.[1];
          assert.ok(origin, stdout);
          hub.add("/google/tfjs-model/served/1", { archive: await tarGz(upscaler), dir: upscaler });
          const handle = "https://tfhub.dev/google/tfjs-model/served/1";
          const options = { mirror: origin, token: TOKEN };
          const first = await call<Result>(page, "artifactsOnly", handle, options);
          assert.ok(first.ok, JSON.stringify(first.error));
          assert.equal(first.weightBytes, 888_300);
          assert.equal(first.lastLoad?.from, "network");
          const hubBefore = hub.requests.length;
          const second = await call<Result>(page, "artifactsOnly", handle, options);
          assert.equal(second.lastLoad?.from, "storage");
          assert.equal(hub.requests.length, hubBefore);
        } finally {
          run.child.kill("SIGTERM");
          await run.done;
        }
      },
    );
  },
);
