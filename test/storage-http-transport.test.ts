// http(s) storage (folder handles, UNCOMPRESSED locations) goes through the download stack: the
// same retries, idle timeout, proxies and resume as archive downloads, direct and proxied alike.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { buffer } from "node:stream/consumers";
import { after, before, describe, it } from "node:test";
import type { HubcacheEvent } from "../src/events.js";
import { openStorage } from "../src/storage/open.js";
import { type FlakyHost, type Script, startFlakyHost } from "./helpers/flaky-host.js";
import { type ForwardProxy, startForwardProxy } from "./helpers/forward-proxy.js";
import { expectCode } from "./helpers/sandbox.js";

let host: FlakyHost;
let proxy: ForwardProxy;
before(async () => {
  host = await startFlakyHost();
  proxy = await startForwardProxy();
});
after(async () => {
  await host.close();
  await proxy.close();
});

const FILE = randomBytes(600_000);
let routes = 0;

for (const via of ["direct", "proxied"] as const) {
  describe(`${via}: http(s) storage over the download stack`, () => {
    const env = (extra: Record<string, string> = {}): Record<string, string> => ({
      ...(via === "proxied" ? { HTTP_PROXY: proxy.url } : {}),
      ...extra,
    });
    /** A folder with one file `weights.bin` answered by `script`. */
    async function folder(script: Script, extra?: Record<string, string>, events?: HubcacheEvent[]) {
      const dir = `/folder-${++routes}`;
      host.route(`${dir}/weights.bin`, script);
      const seen = proxy.seen.length;
      const storage = await openStorage(host.url(dir), {
        env: env(extra),
        retry: { retries: 2, baseDelayMs: 5, maxDelayMs: 10, maxRetryAfterMs: 1000 },
        onEvent: (e) => events?.push(e),
      });
      return { storage, file: `${dir}/weights.bin`, usedProxy: () => proxy.seen.length > seen };
    }

    it("a 503 is retried (with a retry event), then the file is read", async () => {
      const events: HubcacheEvent[] = [];
      const { storage, file, usedProxy } = await folder([{ status: 503 }, { body: FILE }], {}, events);
      const { body, length } = await storage.read("weights.bin");
      assert.ok((await buffer(body)).equals(FILE));
      assert.equal(length, FILE.length);
      assert.equal(host.requestsTo(file).length, 2);
      assert.equal(events.filter((e) => e.type === "retry").length, 1);
      assert.equal(usedProxy(), via === "proxied");
    });

    it("stat retries too, and a 404 is 'not there'", async () => {
      const { storage, file } = await folder([{ status: 502 }, { body: FILE }]);
      assert.equal((await storage.stat("weights.bin"))?.size, FILE.length);
      assert.deepEqual(
        host.requestsTo(file).map((r) => r.method),
        ["HEAD", "HEAD"],
      );
      assert.equal(await storage.stat("missing.bin"), undefined);
      // Storage errors name the location (no handle), as every backend's do.
      await assert.rejects(storage.read("missing.bin"), { code: "ERR_HUBCACHE_NOT_FOUND" });
    });

    it("a body cut mid-way is resumed with Range + If-Range", async () => {
      const { storage, file } = await folder([
        { body: FILE, ranges: true, cutAfter: 200_000 },
        { body: FILE, ranges: true },
      ]);
      const { body } = await storage.read("weights.bin");
      assert.ok((await buffer(body)).equals(FILE));
      assert.match(String(host.requestsTo(file)[1]?.headers.range), /^bytes=[1-9]\d*-$/);
    });

    it("a body cut mid-way from a host that cannot resume is ERR_HUBCACHE_TRUNCATED (a reader cannot start over)", async () => {
      const { storage } = await folder([{ body: FILE, cutAfter: 200_000 }]);
      const { body } = await storage.read("weights.bin");
      await expectCode(buffer(body), "ERR_HUBCACHE_TRUNCATED");
    });

    it("a stall times out (HUBCACHE_IDLE_TIMEOUT) instead of hanging", async () => {
      const { storage } = await folder([{ stallBeforeHeaders: true }], {
        HUBCACHE_IDLE_TIMEOUT: "0.3",
      });
      await expectCode(storage.stat("weights.bin"), "ERR_HUBCACHE_TIMEOUT");
    });

    it("a ranged read gets exactly the range", async () => {
      const { storage } = await folder([{ body: FILE, ranges: true }]);
      const { body, length } = await storage.read("weights.bin", { start: 10, end: 19 });
      assert.ok((await buffer(body)).equals(FILE.subarray(10, 20)));
      assert.equal(length, 10);
    });
  });
}
