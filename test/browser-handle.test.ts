/**
 * The browser build's pure parts, in Node (they use only web APIs Node also has): canonical
 * handles, file URLs with and without a mirror, the digest headers a server may send.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { promises as fs } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import type * as Browser from "hubcache/browser";
import { canonicalHandle, fileUrl, mirrorBase } from "../src/browser/handle.js";
import { digestBase64, offeredDigests } from "../src/browser/net.js";

test("canonical handles: host lower-cased, default port, trailing slashes and fragment dropped", () => {
  assert.equal(canonicalHandle("https://TFHUB.dev:443/google/x/1/"), "https://tfhub.dev/google/x/1");
  assert.equal(canonicalHandle("http://127.0.0.1:8080/a/b//#frag"), "http://127.0.0.1:8080/a/b");
  assert.equal(
    canonicalHandle("https://www.kaggle.com/models/o/m/tfJs/v/1"),
    "https://www.kaggle.com/models/o/m/tfJs/v/1",
  );
  for (const bad of [
    "tfhub.dev/x/1",
    "ftp://host/x",
    "https://host",
    "https://host/",
    "https://host/x?y=1",
    "",
  ]) {
    assert.throws(() => canonicalHandle(bad), { code: "ERR_HUBCACHE_INVALID_HANDLE" }, bad);
  }
});

test("file URLs: fromTFHub's <handle>/<file>?tfjs-format=file, or the mirror's scheme", () => {
  const handle = "https://tfhub.dev/google/tfjs-model/movenet/4";
  assert.equal(fileUrl(handle, "model.json"), `${handle}/model.json?tfjs-format=file`);
  assert.equal(fileUrl(handle, "group 1.bin"), `${handle}/group%201.bin?tfjs-format=file`);
  assert.equal(
    fileUrl(handle, "group1-shard1of2.bin", "http://10.0.0.5:8080/"),
    "http://10.0.0.5:8080/tfhub.dev/google/tfjs-model/movenet/4/group1-shard1of2.bin?tfjs-format=file",
  );
  assert.equal(
    fileUrl("http://127.0.0.1:9000/m/1", "model.json", "http://mirror/base"),
    "http://mirror/base/127.0.0.1:9000/m/1/model.json?tfjs-format=file",
  );
  assert.throws(() => mirrorBase("mirror:8080"), { code: "ERR_HUBCACHE_INVALID_CONFIG" });
  assert.throws(() => mirrorBase("http://m/?token=x"), { code: "ERR_HUBCACHE_INVALID_CONFIG" });
});

test("digest headers: Repr-Digest, Content-Digest (identity only) and Digest, sha-256 and sha-512", async () => {
  const bytes = new TextEncoder().encode("weights");
  const sha256 = await digestBase64("sha-256", bytes);
  const sha512 = await digestBase64("sha-512", bytes);
  assert.equal(sha256, createHash("sha256").update("weights").digest("base64"));
  assert.equal(sha512, createHash("sha512").update("weights").digest("base64"));
  const found = (headers: Record<string, string>): Record<string, string> =>
    Object.fromEntries(offeredDigests(new Headers(headers)));
  assert.deepEqual(found({ "repr-digest": `sha-256=:${sha256}:, sha-512=:${sha512}:` }), {
    "sha-256": sha256,
    "sha-512": sha512,
  });
  assert.deepEqual(found({ "content-digest": `SHA-256=:${sha256}:` }), { "sha-256": sha256 });
  assert.deepEqual(found({ "content-digest": `sha-256=:${sha256}:`, "content-encoding": "gzip" }), {});
  assert.deepEqual(found({ digest: `SHA-256=${sha256},MD5=abc` }), { "sha-256": sha256 });
  assert.deepEqual(found({ etag: `"${sha256}"`, "x-goog-hash": "md5=abc" }), {});
});

test("dist/browser.js is one small, self-contained ES module (no imports, no node:, no TF.js)", async () => {
  const code = await fs.readFile(path.resolve(import.meta.dirname, "..", "dist", "browser.js"), "utf8");
  assert.doesNotMatch(code, /\bimport\s*[\w{*"'(]|\brequire\(|["'`]node:/);
  assert.doesNotMatch(code, /@tensorflow/);
  assert.ok(code.length < 32 * 1024, `${code.length} bytes`);
  const exported = /export\{([^}]*)\}/
    .exec(code)?.[1]
    ?.split(",")
    .map((pair) => pair.split(" as ").at(-1));
  assert.deepEqual(exported?.sort(), [
    "ErrorCode",
    "HubcacheError",
    "cachedModels",
    "canonicalHandle",
    "clearModels",
    "events",
    "fileUrl",
    "ioHandler",
    "removeModel",
  ]);
  // The package's types: "hubcache/browser" resolves to dist/browser.d.ts (checked by tsc).
  const handler: ReturnType<typeof Browser.ioHandler> | undefined = undefined;
  assert.equal(handler, undefined);
});
