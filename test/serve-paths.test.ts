/** The mirror's URL scheme and policy, in process: request paths, ranges, ETags, hosts, routes. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { etagMatches, parseRange } from "../src/serve/files.js";
import { isForbiddenAddress, parseUpstream } from "../src/serve/policy.js";
import { isVersionedHandle, parseMirrorRequest } from "../src/serve/request-path.js";
import { mirrorRoute, mirrorSettings, upstreamRoute } from "../src/net/route.js";

test("request paths name canonical handles and forms", () => {
  assert.deepEqual(parseMirrorRequest("/tfhub.dev/google/yamnet/1?tf-hub-format=compressed"), {
    kind: "archive",
    host: "tfhub.dev",
    handle: "https://tfhub.dev/google/yamnet/1",
    modelFormat: "auto",
    bodyForm: undefined,
  });
  assert.deepEqual(
    parseMirrorRequest("/TFHub.dev/google/x/1?tfjs-format=compressed&hubcache-archive=tar.gz"),
    {
      kind: "archive",
      host: "tfhub.dev",
      handle: "https://tfhub.dev/google/x/1",
      modelFormat: "tfjs",
      bodyForm: "tar.gz",
    },
  );
  // The handle keeps its own query and its trailing slash (both are part of TF Hub's cache key).
  assert.equal(
    (parseMirrorRequest("/example.com/m/?extra=abc&tf-hub-format=compressed") as { handle: string }).handle,
    "https://example.com/m/?extra=abc",
  );
  assert.deepEqual(parseMirrorRequest("/www.kaggle.com/models/g/m/tfJs/v/1/model.json?tfjs-format=file"), {
    kind: "file",
    host: "www.kaggle.com",
    handle: "https://www.kaggle.com/models/g/m/tfJs/v/1",
    file: "model.json",
  });
  assert.equal(
    parseMirrorRequest("/tfhub.dev/google/yamnet/1?tf-hub-format=uncompressed").kind,
    "uncompressed",
  );
  assert.deepEqual(parseMirrorRequest(`/_files/${"a".repeat(40)}/variables/variables.index`), {
    kind: "entry-file",
    hash: "a".repeat(40),
    file: "variables/variables.index",
  });
  assert.deepEqual(parseMirrorRequest("/"), { kind: "index" });
  assert.equal(parseMirrorRequest("/tfhub.dev/google/yamnet/1").kind, "invalid", "no form given");
});

test("unsafe paths are refused before anything else", () => {
  for (const raw of [
    "/tfhub.dev/a/../b?tf-hub-format=compressed",
    "/tfhub.dev/a/%2e%2e/b?tf-hub-format=compressed",
    "/tfhub.dev/a/%2E/b?tf-hub-format=compressed",
    "/tfhub.dev/a%2fb/1?tf-hub-format=compressed",
    "/tfhub.dev/a%5cb/1?tf-hub-format=compressed",
    "/tfhub.dev/a\\b/1?tf-hub-format=compressed",
    "/tfhub.dev/a%00/1?tf-hub-format=compressed",
    "/tfhub.dev//a/1?tf-hub-format=compressed",
    "/tfhub.dev/a/%zz/1?tf-hub-format=compressed",
    "/user@tfhub.dev/a/1?tf-hub-format=compressed",
    `/_files/${"a".repeat(40)}/../x`,
    "/_files/nothex/x",
  ]) {
    assert.equal(parseMirrorRequest(raw).kind, "invalid", raw);
  }
});

test("versioned handles, ranges and ETag matching", () => {
  assert.equal(isVersionedHandle("https://tfhub.dev/google/yamnet/1"), true);
  assert.equal(
    isVersionedHandle("https://www.kaggle.com/models/g/m/frameworks/tfJs/variations/v/versions/3"),
    true,
  );
  assert.equal(isVersionedHandle("https://tfhub.dev/google/yamnet"), false);
  assert.deepEqual(parseRange("bytes=0-9", 100), { start: 0, end: 9 });
  assert.deepEqual(parseRange("bytes=90-", 100), { start: 90, end: 99 });
  assert.deepEqual(parseRange("bytes=-10", 100), { start: 90, end: 99 });
  assert.deepEqual(parseRange("bytes=50-500", 100), { start: 50, end: 99 });
  assert.equal(parseRange("bytes=100-", 100), "unsatisfiable");
  assert.equal(parseRange("bytes=0-1,5-6", 100), undefined, "several ranges: the whole file");
  assert.equal(parseRange("items=0-1", 100), undefined);
  assert.equal(etagMatches('W/"x", "y"', '"y"'), true);
  assert.equal(etagMatches("*", '"y"'), true);
  assert.equal(etagMatches('"z"', '"y"'), false);
});

test("metadata and link-local addresses are never upstreams", () => {
  for (const host of [
    "169.254.169.254",
    "metadata.google.internal",
    "[fd00:ec2::254]",
    "fe80::1",
    "::ffff:169.254.1.1",
  ]) {
    assert.equal(isForbiddenAddress(host), true, host);
  }
  assert.equal(isForbiddenAddress("127.0.0.1"), false);
  assert.match(String(parseUpstream("tfhub.dev=http://169.254.169.254/")), /link-local/);
  assert.match(String(parseUpstream("tfhub.dev")), /HOST=BASEURL/);
  assert.deepEqual(parseUpstream("TFHub.dev=http://127.0.0.1:9000/hub/"), [
    "tfhub.dev",
    "http://127.0.0.1:9000/hub",
  ]);
});

test("routes: the mirror gets the canonical host in its path, the token goes to it only", () => {
  const mirror = mirrorSettings({ mirror: "http://10.0.0.5:8080/", mirrorToken: "t0k" }, {});
  assert.deepEqual(mirror, { base: "http://10.0.0.5:8080", token: "t0k" });
  assert.ok(mirror);
  const route = mirrorRoute(mirror);
  assert.equal(
    route.rewrite("https://tfhub.dev/google/yamnet/1?tf-hub-format=compressed"),
    "http://10.0.0.5:8080/tfhub.dev/google/yamnet/1?tf-hub-format=compressed",
  );
  assert.deepEqual(route.headersFor("http://10.0.0.5:8080/tfhub.dev/x"), { authorization: "Bearer t0k" });
  assert.deepEqual(route.headersFor("https://storage.googleapis.com/x"), {});
  assert.throws(() => route.rewrite("http://plain.example/m"), { code: "ERR_HUBCACHE_UNSUPPORTED" });
  assert.equal(mirrorSettings({}, { HUBCACHE_MIRROR: "" }), undefined);
  assert.throws(() => mirrorSettings({}, { HUBCACHE_MIRROR: "ftp://x" }), {
    code: "ERR_HUBCACHE_INVALID_CONFIG",
  });
  // Only an origin and a path: anything else would end up inside every request URL.
  for (const bad of ["http://h:8080/p/?", "http://h:8080/#x", "http://h:8080/?a=1", "http://:pw@h:8080/"]) {
    assert.throws(
      () => mirrorSettings({}, { HUBCACHE_MIRROR: bad }),
      { code: "ERR_HUBCACHE_INVALID_CONFIG" },
      bad,
    );
  }
  assert.deepEqual(mirrorSettings({}, { HUBCACHE_MIRROR: " https://gw.internal/models// " }), {
    base: "https://gw.internal/models",
    token: undefined,
  });
  const upstream = upstreamRoute(new Map([["tfhub.dev", "http://127.0.0.1:9000"]]));
  assert.equal(
    upstream.rewrite("https://tfhub.dev/google/yamnet/1?tf-hub-format=compressed"),
    "http://127.0.0.1:9000/google/yamnet/1?tf-hub-format=compressed",
  );
  assert.equal(upstream.rewrite("https://www.kaggle.com/models/x"), "https://www.kaggle.com/models/x");
});
