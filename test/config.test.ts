import assert from "node:assert/strict";
import os from "node:os";
import path from "node:path";
import { describe, test } from "node:test";
import { chooseCacheDir, chooseLoadFormat, readTfhubFlags } from "../src/config.js";
import { HubcacheError } from "../src/errors.js";
import {
  descriptorText,
  entryPaths,
  handleHash,
  parseLockContent,
  pythonDateTime,
} from "../src/cache/layout.js";

describe("cache directory precedence (TF Hub's, plus an explicit option on top)", () => {
  const flags = { tfhub_cache_dir: "/from/flag" };
  test("the option wins over everything", () => {
    assert.equal(chooseCacheDir({ cacheDir: "/opt", env: { TFHUB_CACHE_DIR: "/env" }, flags }), "/opt");
  });
  test("a non-empty TFHUB_CACHE_DIR wins over the flag", () => {
    assert.equal(chooseCacheDir({ env: { TFHUB_CACHE_DIR: "/env" }, flags }), "/env");
  });
  test("an empty TFHUB_CACHE_DIR falls through to the flag", () => {
    assert.equal(chooseCacheDir({ env: { TFHUB_CACHE_DIR: "" }, flags }), "/from/flag");
  });
  test("the default is <tmpdir>/tfhub_modules, honouring TMPDIR", () => {
    assert.equal(chooseCacheDir({ env: { TMPDIR: "/scratch" }, flags: {} }), "/scratch/tfhub_modules");
    assert.equal(chooseCacheDir({ env: {}, flags: {} }), path.join(os.tmpdir(), "tfhub_modules"));
  });
  test("relative dirs become absolute; object-store URLs are left alone", () => {
    assert.equal(chooseCacheDir({ env: { TFHUB_CACHE_DIR: "rel/dir" }, flags: {} }), path.resolve("rel/dir"));
    assert.equal(chooseCacheDir({ env: { TFHUB_CACHE_DIR: "gs://b/cache" }, flags: {} }), "gs://b/cache");
  });
  test("--tfhub_cache_dir is read from argv in both absl spellings", () => {
    assert.deepEqual(readTfhubFlags(["x", "--tfhub_cache_dir=/a"]), { tfhub_cache_dir: "/a" });
    assert.deepEqual(
      readTfhubFlags(["--tfhub_cache_dir", "/b", "--tfhub_model_load_format", "UNCOMPRESSED"]),
      {
        tfhub_cache_dir: "/b",
        tfhub_model_load_format: "UNCOMPRESSED",
      },
    );
  });
});

describe("load format", () => {
  test("defaults to AUTO; option > env > flag", () => {
    assert.equal(chooseLoadFormat(undefined, {}, {}), "AUTO");
    assert.equal(
      chooseLoadFormat(undefined, {}, { tfhub_model_load_format: "UNCOMPRESSED" }),
      "UNCOMPRESSED",
    );
    assert.equal(
      chooseLoadFormat(
        undefined,
        { TFHUB_MODEL_LOAD_FORMAT: "COMPRESSED" },
        { tfhub_model_load_format: "UNCOMPRESSED" },
      ),
      "COMPRESSED",
    );
    assert.equal(
      chooseLoadFormat("UNCOMPRESSED", { TFHUB_MODEL_LOAD_FORMAT: "COMPRESSED" }, {}),
      "UNCOMPRESSED",
    );
  });
  test("a lower-case value is refused with a suggestion (TF Hub silently misroutes it)", () => {
    assert.throws(
      () => chooseLoadFormat(undefined, { TFHUB_MODEL_LOAD_FORMAT: "compressed" }, {}),
      (error: unknown) =>
        error instanceof HubcacheError &&
        error.code === "ERR_HUBCACHE_INVALID_CONFIG" &&
        /Did you mean "COMPRESSED"/.test(error.hint ?? ""),
    );
  });
});

describe("layout, byte-compatible with tensorflow_hub", () => {
  test("entry names are sha1 of the exact handle (values from real TF Hub issue logs)", () => {
    const known: [string, string][] = [
      [
        "https://tfhub.dev/google/tf2-preview/mobilenet_v2/feature_vector/4",
        "145bb06ec3b59b08fb564ab752bd5aa222bfb50a",
      ],
      ["https://tfhub.dev/google/yamnet/1", "9616fd04ec2360621642ef9455b84f4b668e219e"],
      [
        "https://tfhub.dev/google/magenta/arbitrary-image-stylization-v1-256/2",
        "f843094219bf78a99e8ea6c8d71f1bc74f07101a",
      ],
      [
        "https://tfhub.dev/tensorflow/efficientnet/lite4/feature-vector/2",
        "a3b91f2744273e376e489b1c60d6bddddebdc084",
      ],
      ["https://tfhub.dev/google/yamnet/1/", "aceb8d9f6b40d3cb292bd4e21bf5325c17518e47"],
    ];
    for (const [handle, hash] of known) assert.equal(handleHash(handle), hash, handle);
  });
  test("file names beside the entry", () => {
    const paths = entryPaths("/c", "https://tfhub.dev/google/yamnet/1");
    const h = "9616fd04ec2360621642ef9455b84f4b668e219e";
    assert.equal(paths.dir, `/c/${h}`);
    assert.equal(paths.descriptor, `/c/${h}.descriptor.txt`);
    assert.equal(paths.lock, `/c/${h}.lock`);
    assert.equal(
      paths.tmpDir("0123456789abcdef0123456789abcdef"),
      `/c/${h}.0123456789abcdef0123456789abcdef.tmp`,
    );
  });
  test("descriptor text is TF Hub's format exactly, with no trailing newline", () => {
    const text = descriptorText(
      "https://tfhub.dev/google/yamnet/1",
      new Date(2024, 4, 1, 12, 34, 56, 789),
      4242,
    );
    assert.match(
      text,
      new RegExp(
        `^Module: https://tfhub\\.dev/google/yamnet/1\\nDownload Time: 2024-05-01 12:34:56\\.789\\d{3}\\nDownloader Hostname: ${os
          .hostname()
          .replace(/\./g, "\\.")} \\(PID:4242\\)$`,
      ),
    );
  });
  test("Python's str(datetime) omits zero microseconds", () => {
    assert.equal(pythonDateTime(new Date(2024, 0, 2, 3, 4, 5, 0), 0), "2024-01-02 03:04:05");
    assert.equal(pythonDateTime(new Date(2024, 0, 2, 3, 4, 5, 7), 9), "2024-01-02 03:04:05.007009");
  });
  test("lock content parses with dotted host names", () => {
    assert.deepEqual(parseLockContent("node-1.example.com.4242.0123456789abcdef0123456789abcdef"), {
      host: "node-1.example.com",
      pid: 4242,
      uid: "0123456789abcdef0123456789abcdef",
    });
  });
});

describe("numeric options passed in code are validated", () => {
  test("a negative or non-finite value is ERR_HUBCACHE_INVALID_CONFIG naming the option", async () => {
    const { resolveSettings } = await import("../src/resolve.js");
    for (const [name, value] of [
      ["lockTimeoutMs", -1],
      ["idleTimeoutMs", Number.NaN],
      ["maxExtractBytes", Number.POSITIVE_INFINITY],
    ] as const) {
      assert.throws(
        () => resolveSettings({ [name]: value, env: {}, flags: {} }),
        (error: unknown) =>
          error instanceof HubcacheError &&
          error.code === "ERR_HUBCACHE_INVALID_CONFIG" &&
          error.message.includes(name),
      );
    }
    assert.equal(
      resolveSettings({ lockTimeoutMs: 1500, env: { HUBCACHE_LOCK_TIMEOUT: "9" }, flags: {} }).lockTimeoutMs,
      1500,
    );
    assert.equal(resolveSettings({ env: { HUBCACHE_LOCK_TIMEOUT: "9" }, flags: {} }).lockTimeoutMs, 9000);
  });
});
