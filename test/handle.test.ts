import assert from "node:assert/strict";
import path from "node:path";
import { describe, test } from "node:test";
import { appendFormatQuery, detectModelFormat, parseHandle } from "../src/handle.js";
import { HubcacheError } from "../src/errors.js";

describe("appendFormatQuery matches tensorflow_hub's _append_format_query", () => {
  const cases: [string, string][] = [
    ["https://tfhub.dev/google/yamnet/1", "https://tfhub.dev/google/yamnet/1?tf-hub-format=compressed"],
    [
      "https://example.com/module?extra=abc&tf-hub-format=test",
      "https://example.com/module?extra=abc&tf-hub-format=test&tf-hub-format=compressed",
    ],
    ["https://example.com/m?a=&b=1", "https://example.com/m?b=1&tf-hub-format=compressed"],
    ["https://example.com/m?flag", "https://example.com/m?tf-hub-format=compressed"],
    ["https://example.com/m#frag", "https://example.com/m?tf-hub-format=compressed#frag"],
    [
      "https://example.com/m?tf-hub-format=compressed",
      "https://example.com/m?tf-hub-format=compressed&tf-hub-format=compressed",
    ],
    ["https://example.com/m?q=a%20b", "https://example.com/m?q=a+b&tf-hub-format=compressed"],
    ["https://example.com/m?q=a+b/c", "https://example.com/m?q=a+b%2Fc&tf-hub-format=compressed"],
    ["https://example.com/m?", "https://example.com/m?tf-hub-format=compressed"],
    ["https://example.com/m?x=1#", "https://example.com/m?x=1&tf-hub-format=compressed"],
  ];
  for (const [input, expected] of cases) {
    test(input, () => assert.equal(appendFormatQuery(input, "tf-hub-format", "compressed"), expected));
  }
});

describe("parseHandle", () => {
  test("a tfhub.dev handle is an archive fetched with ?tf-hub-format=compressed", () => {
    assert.deepEqual(parseHandle("https://tfhub.dev/google/yamnet/1"), {
      kind: "http-archive",
      handle: "https://tfhub.dev/google/yamnet/1",
      downloadUrl: "https://tfhub.dev/google/yamnet/1?tf-hub-format=compressed",
      modelFormat: "saved-model",
    });
  });

  test("a Kaggle model URL uses the same protocol", () => {
    const parsed = parseHandle("https://www.kaggle.com/models/google/yamnet/tensorFlow2/yamnet/1");
    assert.equal(parsed.kind, "http-archive");
    assert.ok(parsed.kind === "http-archive" && parsed.downloadUrl.endsWith("?tf-hub-format=compressed"));
  });

  test("TF.js handles ask for ?tfjs-format=compressed", () => {
    for (const handle of [
      "https://tfhub.dev/google/tfjs-model/movenet/singlepose/lightning/4",
      "https://www.kaggle.com/models/google/movenet/tfJs/singlepose-lightning/4",
      "https://www.kaggle.com/models/google/mobilenet-v3/TfJs/small-100-224-feature-vector/1",
      "https://www.kaggle.com/models/google/movenet/frameworks/tfJs/variations/singlepose-lightning/versions/4",
    ]) {
      const parsed = parseHandle(handle);
      assert.ok(parsed.kind === "http-archive", handle);
      assert.equal(parsed.modelFormat, "tfjs", handle);
      assert.equal(parsed.downloadUrl, `${handle}?tfjs-format=compressed`);
    }
  });

  test("the modelFormat option forces the protocol family", () => {
    const parsed = parseHandle("https://example.com/my-model", { modelFormat: "tfjs" });
    assert.ok(parsed.kind === "http-archive");
    assert.equal(parsed.downloadUrl, "https://example.com/my-model?tfjs-format=compressed");
    assert.equal(detectModelFormat("https://tfhub.dev/google/tfjs-model/x/1", "saved-model"), "saved-model");
    assert.equal(detectModelFormat("https://mirror.example/google/tfjs-model/x/1", "auto"), "tfjs");
    assert.equal(
      detectModelFormat("https://www.kaggle.com/models/tfjs/some-model/tensorFlow2/v/1", "auto"),
      "saved-model",
    );
  });

  test("hub.tensorflow.google.cn maps to the direct archive URL with no query added", () => {
    const parsed = parseHandle("https://hub.tensorflow.google.cn/google/yamnet/1");
    assert.ok(parsed.kind === "http-archive");
    assert.equal(parsed.downloadUrl, "https://gcs.tensorflow.google.cn/tfhub-modules/google/yamnet/1.tar.gz");
  });

  test("UNCOMPRESSED mode asks for ?tf-hub-format=uncompressed", () => {
    const parsed = parseHandle("https://tfhub.dev/google/spice/2", { loadFormat: "UNCOMPRESSED" });
    assert.deepEqual(parsed, {
      kind: "http-uncompressed",
      handle: "https://tfhub.dev/google/spice/2",
      requestUrl: "https://tfhub.dev/google/spice/2?tf-hub-format=uncompressed",
      modelFormat: "saved-model",
    });
  });

  test("gs:// and s3:// tarballs are archives, other object locations are folders", () => {
    assert.deepEqual(parseHandle("gs://bucket/models/m.tar.gz"), {
      kind: "object-archive",
      handle: "gs://bucket/models/m.tar.gz",
      scheme: "gs",
      bucket: "bucket",
      key: "models/m.tar.gz",
    });
    assert.equal(parseHandle("s3://b/x.tgz").kind, "object-archive");
    assert.equal(parseHandle("s3://b/x.tar").kind, "object-archive");
    assert.deepEqual(parseHandle("s3://b/models/m/"), {
      kind: "object-folder",
      handle: "s3://b/models/m/",
      scheme: "s3",
      bucket: "b",
      prefix: "models/m",
    });
  });

  test("local paths and file:// URLs are used in place", () => {
    assert.deepEqual(parseHandle("file:///opt/models/m"), {
      kind: "path",
      handle: "file:///opt/models/m",
      path: "/opt/models/m",
    });
    assert.deepEqual(parseHandle("models/m", { cwd: "/work" }), {
      kind: "path",
      handle: "models/m",
      path: path.resolve("/work", "models/m"),
    });
  });

  test("bad handles give coded errors", () => {
    const code = (fn: () => unknown): string | undefined => {
      try {
        fn();
      } catch (error) {
        return error instanceof HubcacheError ? error.code : "not a HubcacheError";
      }
      return undefined;
    };
    assert.equal(
      code(() => parseHandle("")),
      "ERR_HUBCACHE_INVALID_HANDLE",
    );
    assert.equal(
      code(() => parseHandle("gs:///x.tar")),
      "ERR_HUBCACHE_INVALID_HANDLE",
    );
    assert.equal(
      code(() => parseHandle("ftp://example.com/m.tar.gz")),
      "ERR_HUBCACHE_UNSUPPORTED",
    );
  });

  test("an http(s) URL without a host is an invalid handle with a hint, before any network", () => {
    for (const handle of [
      "https://",
      "http://",
      "http:///x",
      "https://?a",
      "https://#top",
      "http://u:p@/m",
      "https://:8080/m",
    ]) {
      assert.throws(
        () => parseHandle(handle),
        (error: unknown) =>
          error instanceof HubcacheError &&
          error.code === "ERR_HUBCACHE_INVALID_HANDLE" &&
          /names no host/.test(error.message) &&
          /https:\/\/tfhub\.dev\//.test(error.hint ?? ""),
        handle,
      );
    }
    assert.throws(() => parseHandle("https://exa mple.com/m"), /not a valid URL/);
    for (const handle of [
      "https://tfhub.dev/google/yamnet/1",
      "http://127.0.0.1:8080/m",
      "https://[::1]/m",
      "https://u@h.test/m",
    ]) {
      assert.equal(parseHandle(handle).kind, "http-archive", handle);
    }
  });
});
