// Bodies that are not archives, archives that were cut or damaged, and decompression bombs.
// Each must fail with its own code, say what came back, and leave no trace.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { main } from "../src/cli/main.js";
import type { HubcacheEvent } from "../src/events.js";
import { type ResolveOptions, resolve } from "../src/resolve.js";
import { entryPaths } from "../src/cache/layout.js";
import { benignEntries, gzip, tarOf } from "./helpers/archives.js";
import { readTree } from "./helpers/fixtures.js";
import { type Answer, type FlakyHost, startFlakyHost } from "./helpers/flaky-host.js";
import { assertNoTrace, expectCode, makeSandbox } from "./helpers/sandbox.js";

let host: FlakyHost;
before(async () => {
  host = await startFlakyHost();
});
after(() => host.close());

let routeCount = 0;
async function fails(
  answer: Answer,
  code: string,
  options: Partial<ResolveOptions> = {},
): Promise<{ message: string; hint: string; events: HubcacheEvent[]; route: string }> {
  const sandbox = await makeSandbox();
  const events: HubcacheEvent[] = [];
  const route = `/broken/${++routeCount}`;
  try {
    host.route(route, [answer]);
    const error = await expectCode(
      resolve(host.url(route), {
        cacheDir: sandbox.cacheDir,
        retries: 0,
        onEvent: (event) => events.push(event),
        ...options,
      }),
      code,
    );
    await assertNoTrace(sandbox);
    return { message: error.message, hint: error.hint ?? "", events, route };
  } finally {
    await sandbox.cleanup();
  }
}

const MODEL_TAR = tarOf(benignEntries());
const MODEL_TGZ = gzip(MODEL_TAR);

describe("bodies that are not archives", () => {
  it("an HTML sign-in page is refused, naming its content type and first bytes", async () => {
    const page =
      "<!DOCTYPE html><html><head><title>Sign in - Kaggle</title></head><body>Sign in</body></html>";
    const { message, hint } = await fails(
      { body: Buffer.from(page), headers: { "content-type": "text/html; charset=utf-8" } },
      "ERR_HUBCACHE_NOT_AN_ARCHIVE",
    );
    assert.match(message, /text\/html/);
    assert.match(message, /<!DOCTYPE html><html><head><title>Sign in/);
    assert.match(hint, /sign-in|credentials/i);
  });

  it("an empty body is refused as an empty body", async () => {
    const { message } = await fails({ body: Buffer.alloc(0) }, "ERR_HUBCACHE_NOT_AN_ARCHIVE");
    assert.match(message, /empty body/);
  });

  it("a JSON error document is refused", async () => {
    const { message } = await fails(
      { body: Buffer.from('{"error":"quota exceeded"}'), headers: { "content-type": "application/json" } },
      "ERR_HUBCACHE_NOT_AN_ARCHIVE",
    );
    assert.match(message, /application\/json.*quota exceeded/);
  });

  it("gzip data that holds no tar (a gzip'd HTML page) is refused", async () => {
    const { message } = await fails(
      { body: gzip(Buffer.from("<html><body>" + "x".repeat(2000) + "</body></html>")) },
      "ERR_HUBCACHE_NOT_AN_ARCHIVE",
    );
    assert.match(message, /gzip data that does not hold a tar/);
  });
});

describe("truncated and corrupt archives", () => {
  it("a body shorter than its Content-Length is truncated", async () => {
    const { message } = await fails(
      { body: MODEL_TGZ.subarray(0, MODEL_TGZ.length - 100), declaredLength: MODEL_TGZ.length },
      "ERR_HUBCACHE_TRUNCATED",
    );
    assert.match(message, /cut short after \d+ of \d+ bytes/);
  });

  it("a gzip without its trailer (CRC32 + ISIZE) is truncated", async () => {
    await fails({ body: MODEL_TGZ.subarray(0, MODEL_TGZ.length - 8) }, "ERR_HUBCACHE_TRUNCATED");
  });

  it("a gzip with a wrong CRC32 is corrupt", async () => {
    const bad = Buffer.from(MODEL_TGZ);
    bad[bad.length - 8] = (bad[bad.length - 8] ?? 0) ^ 0xff;
    const { message } = await fails({ body: bad }, "ERR_HUBCACHE_CORRUPT");
    assert.match(message, /check/);
  });

  it("a gzip with a wrong ISIZE is corrupt", async () => {
    const bad = Buffer.from(MODEL_TGZ);
    bad.writeUInt32LE(bad.readUInt32LE(bad.length - 4) + 1, bad.length - 4);
    await fails({ body: bad }, "ERR_HUBCACHE_CORRUPT");
  });

  it("a plain tar cut exactly at a member boundary (no end-of-archive blocks) is truncated", async () => {
    const cut = tarOf(benignEntries().slice(0, 3), { end: false });
    const { message } = await fails({ body: cut }, "ERR_HUBCACHE_TRUNCATED");
    assert.match(message, /end-of-archive/);
  });

  it("a complete gzip of a tar without end-of-archive blocks is truncated", async () => {
    await fails({ body: gzip(tarOf(benignEntries(), { end: false })) }, "ERR_HUBCACHE_TRUNCATED");
  });

  // tar's end-of-archive marker is two zero blocks; one alone is an archive cut short inside it.
  const ONE_ZERO_BLOCK = Buffer.concat([tarOf(benignEntries(), { end: false }), Buffer.alloc(512)]);

  it("a plain tar ending with a single zero block is truncated", async () => {
    const { message } = await fails({ body: ONE_ZERO_BLOCK }, "ERR_HUBCACHE_TRUNCATED");
    assert.match(message, /end-of-archive/);
  });

  it("a complete gzip of a tar ending with a single zero block is truncated", async () => {
    await fails({ body: gzip(ONE_ZERO_BLOCK) }, "ERR_HUBCACHE_TRUNCATED");
  });

  it("a plain tar cut in the middle of a file is truncated", async () => {
    await fails({ body: MODEL_TAR.subarray(0, 512 * 3 + 100) }, "ERR_HUBCACHE_TRUNCATED");
  });

  it("a tar header with a bad checksum in the middle is corrupt", async () => {
    const bad = Buffer.from(MODEL_TAR);
    // The third header (variables/) starts after ./ (512) and saved_model.pb (512 + 3072).
    bad[512 + 512 + 3072 + 10] = 0x41;
    await fails({ body: bad }, "ERR_HUBCACHE_CORRUPT");
  });

  it("a connection reset mid-body (no retries left) is truncated", async () => {
    const big = gzip(tarOf([...benignEntries(), { path: "./big.bin", content: Buffer.alloc(400_000, 3) }]));
    const { route } = await fails(
      { body: Buffer.concat([big, Buffer.alloc(0)]), cutAfter: 200 },
      "ERR_HUBCACHE_TRUNCATED",
    );
    assert.equal(host.requestsTo(route).length, 1, "no retries left: one request, not resumed");
  });
});

describe("decompression bombs", () => {
  // 64 MiB of zeros in one file: about 64 KiB on the wire.
  const bomb = gzip(tarOf([{ path: "zeros.bin", content: Buffer.alloc(64 << 20) }]));
  const limit = 4 << 20;

  it("maxExtractBytes stops a bomb before the limit is written", async () => {
    // Sent slowly (4 MiB of zeros is about 4 KiB of gzip), so that the throttled progress events
    // (one per 100 ms) report bytes before the limit is crossed.
    const { message, events } = await fails(
      { body: bomb, trickle: { bytes: 256, everyMs: 25 } },
      "ERR_HUBCACHE_TOO_LARGE",
      { maxExtractBytes: limit },
    );
    assert.match(message, new RegExp(`more than ${limit} bytes`));
    for (const event of events) {
      if (event.type === "progress") {
        assert.ok(event.extractedBytes <= limit, `${event.extractedBytes} > ${limit}`);
      }
    }
    const extracted = events.filter((e) => e.type === "progress" && e.extractedBytes > 0);
    assert.ok(
      extracted.length > 0,
      "no progress event reported extracted bytes: the bound above checked nothing",
    );
  });

  it("HUBCACHE_MAX_EXTRACT_BYTES sets the limit", async () => {
    const { message } = await fails({ body: bomb }, "ERR_HUBCACHE_TOO_LARGE", {
      env: { HUBCACHE_MAX_EXTRACT_BYTES: String(limit) },
    });
    // The variable's limit, not some default guard.
    assert.match(message, new RegExp(`more than ${limit} bytes`));
  });

  it("the CLI's --max-extract-bytes sets the limit and prints error[ERR_HUBCACHE_TOO_LARGE]", async () => {
    const sandbox = await makeSandbox();
    try {
      host.route("/bomb-cli", [{ body: bomb }]);
      let stdout = "";
      let stderr = "";
      const code = await main(
        [
          "resolve",
          "--quiet",
          "--cache-dir",
          sandbox.cacheDir,
          "--max-extract-bytes",
          String(limit),
          host.url("/bomb-cli"),
        ],
        {
          out: { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) },
          env: { HUBCACHE_RETRIES: "0" },
        },
      );
      assert.equal(code, 1);
      assert.equal(stdout, "");
      assert.match(stderr, /^error\[ERR_HUBCACHE_TOO_LARGE\]: /);
      assert.match(stderr, /hint: /);
      // The flag's limit, not some default guard.
      assert.match(stderr, new RegExp(`more than ${limit} bytes`));
      await assertNoTrace(sandbox);
    } finally {
      await sandbox.cleanup();
    }
  });

  it("an archive under the limit still resolves", async () => {
    const sandbox = await makeSandbox();
    try {
      host.route("/small", [{ body: MODEL_TGZ }]);
      // The limit counts the tar stream's bytes: this one is exactly at it.
      const dir = await resolve(host.url("/small"), {
        cacheDir: sandbox.cacheDir,
        maxExtractBytes: MODEL_TAR.length,
      });
      assert.equal(dir, entryPaths(sandbox.cacheDir, host.url("/small")).dir);
      const expected = new Map<string, Buffer>();
      for (const entry of benignEntries()) {
        if (entry.content === undefined) continue;
        expected.set(entry.path.replace(/^\.\//, ""), Buffer.from(entry.content));
      }
      assert.deepEqual(await readTree(dir), expected);
    } finally {
      await sandbox.cleanup();
    }
  });
});
