import assert from "node:assert/strict";
import { test } from "node:test";
import { HubcacheError } from "../src/errors.js";
import { redactText, redactUrl } from "../src/redact.js";

test("signed storage URLs lose their whole query", () => {
  const signed =
    "https://storage.googleapis.com/kagglesdsdata/models/1/2/model.tar.gz?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=abc&X-Goog-Signature=0123";
  const redacted = redactUrl(signed);
  assert.equal(
    redacted,
    "https://storage.googleapis.com/kagglesdsdata/models/1/2/model.tar.gz?[signed query redacted]",
  );
  assert.doesNotMatch(redacted, /0123|abc/);
  assert.doesNotMatch(
    redactUrl("https://b.s3.amazonaws.com/k?X-Amz-Signature=ff&X-Amz-Credential=AKIA"),
    /AKIA|ff/,
  );
});

test("user info and query values are masked (issue 10: every value, names kept); hubcache's own kept", () => {
  assert.equal(redactUrl("https://user:pw@example.com/m"), "https://***@example.com/m");
  assert.equal(
    redactUrl("https://example.com/m?token=s3cret&v=1"),
    "https://example.com/m?token=REDACTED&v=REDACTED",
  );
  assert.equal(
    redactUrl("https://tfhub.dev/google/yamnet/1?tf-hub-format=compressed"),
    "https://tfhub.dev/google/yamnet/1?tf-hub-format=compressed",
  );
});

test("URLs inside messages, hints and handles of errors are redacted", () => {
  const error = new HubcacheError("ERR_HUBCACHE_HTTP", "failed at https://x.test/a?X-Goog-Signature=abc.", {
    handle: "https://u:p@x.test/m",
    hint: "see https://x.test/b?access_token=zzz",
  });
  assert.equal(error.message, "failed at https://x.test/a?[signed query redacted].");
  assert.equal(error.handle, "https://***@x.test/m");
  assert.doesNotMatch(error.hint ?? "", /zzz/);
  assert.doesNotMatch(redactText("GET https://x.test/a?sig=1&se=2"), /sig=1/);
  // Redacted, not emptied: the rest of the hint and of the text stays.
  assert.equal(error.hint, "see https://x.test/b?access_token=REDACTED");
  assert.equal(redactText("GET https://x.test/a?sig=1&se=2"), "GET https://x.test/a?[signed query redacted]");
});
