// The pure rules of the network layer: Retry-After, backoff, the retry budget, NO_PROXY matching.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { proxyForUrl, readProxyEnv } from "../src/net/proxy.js";
import { DEFAULT_RETRY_POLICY, RetryBudget, backoffDelay, parseRetryAfter } from "../src/net/retry.js";

describe("retry arithmetic", () => {
  it("Retry-After is read as seconds or as an HTTP date", () => {
    const now = Date.parse("2025-01-01T00:00:00Z");
    assert.equal(parseRetryAfter("7", now), 7000);
    assert.equal(parseRetryAfter("Wed, 01 Jan 2025 00:00:30 GMT", now), 30_000);
    assert.equal(parseRetryAfter("Tue, 31 Dec 2024 00:00:00 GMT", now), 0);
    assert.equal(parseRetryAfter("soon", now), undefined);
    assert.equal(parseRetryAfter(null, now), undefined);
  });

  it("backoff doubles per attempt, with jitter between half and all of it, capped", () => {
    const policy = { ...DEFAULT_RETRY_POLICY, baseDelayMs: 1000, maxDelayMs: 8000 };
    assert.equal(
      backoffDelay(1, policy, () => 0),
      500,
    );
    assert.equal(
      backoffDelay(1, policy, () => 1),
      1000,
    );
    assert.equal(
      backoffDelay(3, policy, () => 1),
      4000,
    );
    assert.equal(
      backoffDelay(10, policy, () => 1),
      8000,
    );
    assert.equal(
      backoffDelay(10, policy, () => 0),
      4000,
    );
  });

  it("the budget is shared and refuses waits longer than the Retry-After cap", () => {
    const policy = { ...DEFAULT_RETRY_POLICY, retries: 2, maxRetryAfterMs: 10_000 };
    const budget = new RetryBudget(policy);
    assert.equal(budget.next(20_000), undefined, "too long: give up instead of hanging");
    assert.equal(budget.next(3000), 3000);
    const backoff = budget.next(undefined);
    assert.notEqual(backoff, undefined);
    // Without a Retry-After, the second retry's own backoff: 2 x base, with jitter down to half.
    const second = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2);
    assert.equal(typeof backoff, "number");
    assert.ok(
      backoff !== undefined && backoff >= second / 2 && backoff <= second,
      `${backoff} outside [${second / 2}, ${second}]`,
    );
    assert.equal(budget.next(0), undefined, "spent");
  });
});

describe("proxy selection", () => {
  const env = readProxyEnv({
    HTTP_PROXY: "http://proxy:3128",
    HTTPS_PROXY: "proxy-s:3129",
    NO_PROXY: "localhost, .internal.example,10.1.2.3:8080",
  });
  const pick = (url: string): string | undefined => proxyForUrl(new URL(url), env);

  it("picks the proxy by scheme and adds http:// when the value has none", () => {
    assert.equal(pick("http://tfhub.dev/m"), "http://proxy:3128");
    assert.equal(pick("https://kaggle.com/m"), "http://proxy-s:3129");
  });

  it("NO_PROXY matches exact hosts, domain suffixes and host:port", () => {
    assert.equal(pick("http://localhost:9000/"), undefined);
    assert.equal(pick("https://a.internal.example/"), undefined);
    assert.equal(pick("https://internal.example/"), undefined);
    assert.equal(pick("http://10.1.2.3:8080/"), undefined);
    assert.equal(pick("http://10.1.2.3:8081/"), "http://proxy:3128");
    assert.equal(pick("https://notinternal.example/"), "http://proxy-s:3129");
  });

  it("HTTPS_PROXY falls back to HTTP_PROXY; empty values mean no proxy", () => {
    assert.equal(
      proxyForUrl(new URL("https://x/"), readProxyEnv({ http_proxy: "http://p:1" })),
      "http://p:1",
    );
    assert.equal(proxyForUrl(new URL("https://x/"), readProxyEnv({ HTTPS_PROXY: "" })), undefined);
  });
});
