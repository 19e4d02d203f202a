import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { test } from "node:test";

// The public API, as the built package exports it (its types are pinned by test/api/consumer.ts).
// Internals stay out: a user should never reach a helper that writes to a bucket or the cache.
const EXPECTED = [
  "ErrorCode",
  "HubcacheError",
  "VERSION",
  "cacheDirInfo",
  "cacheIOHandler",
  "dirSource",
  "handleHash",
  "httpSource",
  "hubFetch",
  "isHubcacheError",
  "listEntries",
  "load",
  "modelInfo",
  "openStorage",
  "parseDuration",
  "parseHandle",
  "parseSize",
  "pruneCache",
  "redactUrl",
  "removeEntries",
  "resolve",
  "sourceIOHandler",
  "storageSource",
  "verifyEntries",
];

test("the package exports exactly the public API", async () => {
  const exported = Object.keys(await import("hubcache")).sort();
  assert.deepEqual(exported, EXPECTED);
});

test("the package's entry points are the built bundles, with types", async () => {
  const manifest = JSON.parse(await readFile(new URL("../package.json", import.meta.url), "utf8")) as {
    exports: Record<string, { types?: string; default?: string } | string>;
    scripts: Record<string, string>;
  };
  assert.deepEqual(manifest.exports["."], { types: "./dist/index.d.ts", default: "./dist/index.js" });
  assert.equal(manifest.scripts.prepare, undefined, "nothing runs on a consumer's install");
});
