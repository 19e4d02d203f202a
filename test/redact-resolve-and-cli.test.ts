// Secrets never shown end to end: signed-URL queries and credentials in a handle appear in no
// error, event or CLI output of a real resolve against a real host.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { main } from "../src/cli/main.js";
import type { HubcacheEvent } from "../src/events.js";
import { resolve } from "../src/resolve.js";
import { type FlakyHost, startFlakyHost } from "./helpers/flaky-host.js";
import { assertNoTrace, expectCode, makeSandbox } from "./helpers/sandbox.js";

const SIGNED =
  "/storage/model.tar.gz?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=svc%40proj&X-Goog-Signature=deadbeefcafe";
const SECRETS = [/deadbeefcafe/, /X-Goog-Credential=svc/, /hunter2/, /tok-123456/];

let host: FlakyHost;
before(async () => {
  host = await startFlakyHost();
  // The handle redirects to a signed storage URL, which fails: first 503s, then 403 (expired).
  host.route("/models/gated", [{ redirect: SIGNED }]);
  host.route("/storage/model.tar.gz", [{ status: 503 }, { status: 403 }]);
  host.route("/models/spaced", [{ status: 503, headers: { "Retry-After": "0" } }, { status: 404 }]);
});
after(() => host.close());

describe("secrets never shown", () => {
  it("signed-URL queries and credentials in the handle appear in no message, hint, event or CLI output", async () => {
    const handle = host.url("/models/gated").replace("http://", "http://bob:hunter2@") + "?token=tok-123456";
    const sandbox = await makeSandbox();
    const events: HubcacheEvent[] = [];
    try {
      const error = await expectCode(
        resolve(handle, { cacheDir: sandbox.cacheDir, retryDelayMs: 5, onEvent: (e) => events.push(e) }),
        "ERR_HUBCACHE_FORBIDDEN",
      );
      assert.equal(error.status, 403);
      assert.ok(
        events.some((e) => e.type === "retry"),
        "the 503 was retried",
      );
      const shown = JSON.stringify([error.message, error.hint, error.handle, error.toJSON(), events]);
      for (const secret of SECRETS) assert.doesNotMatch(shown, secret);
      assert.match(error.message, /\[signed query redacted\]/);
      await assertNoTrace(sandbox);

      let stderr = "";
      let stdout = "";
      const code = await main(["resolve", "--cache-dir", sandbox.cacheDir, handle], {
        out: { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) },
        env: { HUBCACHE_RETRIES: "0" },
        stderrIsTTY: false,
      });
      assert.equal(code, 1);
      assert.equal(stdout, "");
      // The storage route answers 403 from now on (its 503 was used up above).
      assert.match(stderr, /^error\[ERR_HUBCACHE_FORBIDDEN\]/);
      for (const secret of SECRETS) assert.doesNotMatch(stderr, secret);
    } finally {
      await sandbox.cleanup();
    }
  });

  it("the CLI hides a raw-space query value and odd user info of its own arguments in every line and in --json", async () => {
    // Redaction of a free text cannot tell where "?key=my secret value" ends; the CLI knows.
    const handle = `${host.url("/models/spaced").replace("http://", 'http://a"b c:p w`d@')}?key=my secret value&x=1`;
    const sandbox = await makeSandbox();
    try {
      for (const json of [false, true]) {
        let shown = "";
        const code = await main(
          ["resolve", ...(json ? ["--json"] : []), "--cache-dir", sandbox.cacheDir, handle],
          {
            out: { stdout: (t) => (shown += t), stderr: (t) => (shown += t) },
            env: { HUBCACHE_RETRIES: "1" },
            stderrIsTTY: false,
          },
        );
        assert.equal(code, 1);
        assert.match(shown, json ? /"code": "ERR_HUBCACHE_NOT_FOUND"/ : /^retry 1/m);
        for (const secret of [/secret/, /value/, /p w/, /a"b/, /a\\"b/]) assert.doesNotMatch(shown, secret);
      }
    } finally {
      await sandbox.cleanup();
    }
  });
});
