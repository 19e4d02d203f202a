// A flaky network: retries (statuses, Retry-After, resets, stalls, trickles), resume with Range +
// If-Range, a clean restart when the host cannot resume, and no retry where it cannot help. Every
// case runs twice: direct (node:http) and through a local forward proxy (undici), with the same
// expected outcome, because the two HTTP stacks must agree.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import zlib from "node:zlib";
import type { HubcacheEvent } from "../src/events.js";
import { type ResolveOptions, resolve } from "../src/resolve.js";
import { type EntrySpec, gzip, tarOf } from "./helpers/archives.js";
import { readTree } from "./helpers/fixtures.js";
import { type Answer, type FlakyHost, type Script, startFlakyHost } from "./helpers/flaky-host.js";
import { type ForwardProxy, startForwardProxy } from "./helpers/forward-proxy.js";
import { type Sandbox, assertNoTrace, expectCode, makeSandbox } from "./helpers/sandbox.js";

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

type Path = "direct" | "proxied";
const PATHS: Path[] = ["direct", "proxied"];
/** The environment that picks the path (direct ignores any proxy of the machine running the tests). */
const pathEnv = (via: Path): Record<string, string> => (via === "proxied" ? { HTTP_PROXY: proxy.url } : {});

/** A model whose archive is big enough to be cut mid-body (about 1.5 MB on the wire). */
function modelEntries(tag: string): EntrySpec[] {
  return [
    { path: "./", type: "Directory" },
    { path: `./saved_model_${tag}.pb`, content: Buffer.from(`graph ${tag}`) },
    { path: "./variables/", type: "Directory" },
    { path: "./variables/variables.data-00000-of-00001", content: randomBytes(1_500_000) },
  ];
}
const V1 = modelEntries("v1");
const V1_TGZ = gzip(tarOf(V1));
/** About 20 KB on the wire: a trickle of it takes seconds, a normal transfer milliseconds. */
const SMALL: EntrySpec[] = [
  { path: "./", type: "Directory" },
  { path: "./saved_model.pb", content: randomBytes(20_000) },
];
const SMALL_TGZ = gzip(tarOf(SMALL));

function expectedTree(entries: EntrySpec[]): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const e of entries) {
    if ((e.type ?? "File") === "File") out.set(e.path.replace(/^\.\//, ""), Buffer.from(e.content ?? ""));
  }
  return out;
}

async function assertTree(dir: string, entries: EntrySpec[]): Promise<void> {
  const actual = await readTree(dir);
  const expected = expectedTree(entries);
  assert.deepEqual([...actual.keys()].sort(), [...expected.keys()].sort());
  for (const [name, bytes] of expected) assert.ok(actual.get(name)?.equals(bytes), `${name} differs`);
}

let routeCount = 0;
interface Run {
  route: string;
  sandbox: Sandbox;
  events: HubcacheEvent[];
  retries: Extract<HubcacheEvent, { type: "retry" }>[];
}

async function withRoute(
  via: Path,
  script: Script,
  work: (run: Run, options: ResolveOptions) => Promise<void>,
): Promise<void> {
  const route = `/net/${++routeCount}`;
  host.route(route, script);
  const tunnelsBefore = proxy.seen.length;
  const sandbox = await makeSandbox();
  const events: HubcacheEvent[] = [];
  const run: Run = {
    route,
    sandbox,
    events,
    get retries() {
      return events.filter((e): e is Extract<HubcacheEvent, { type: "retry" }> => e.type === "retry");
    },
  };
  try {
    await work(run, {
      cacheDir: sandbox.cacheDir,
      retryDelayMs: 5,
      idleTimeoutMs: 10_000,
      env: pathEnv(via),
      onEvent: (event) => events.push(event),
    });
    // The proxied runs really went through the proxy (and the direct ones did not).
    assert.equal(proxy.seen.length > tunnelsBefore, via === "proxied", `${via}: proxy use`);
  } finally {
    await sandbox.cleanup();
  }
}

const ok = (body: Buffer, extra: Partial<Answer> = {}): Answer => ({ body, ...extra });

for (const via of PATHS) {
  describe(`${via}: retries`, () => {
    it("a host failing twice with 503 + Retry-After, then succeeding, is retried after the delay it asked for", async () => {
      await withRoute(
        via,
        [
          { status: 503, headers: { "retry-after": "1" } },
          { status: 503, headers: { "retry-after": "1" } },
          ok(V1_TGZ),
        ],
        async (run, options) => {
          const dir = await resolve(host.url(run.route), options);
          await assertTree(dir, V1);
          assert.equal(host.requestsTo(run.route).length, 3);
          assert.deepEqual(
            run.retries.map((r) => [r.attempt, r.delayMs]),
            [
              [1, 1000],
              [2, 1000],
            ],
          );
          assert.match(run.retries[0]?.reason ?? "", /HTTP 503.*Retry-After: 1 s/);
          const [first] = run.retries;
          assert.equal(first?.retries, 5, "retries allowed in all");
          assert.equal(first?.url, `${host.url(run.route)}?tf-hub-format=compressed`);
          assert.equal(first?.code, "ERR_HUBCACHE_HTTP");
          assert.ok((first?.elapsedMs ?? -1) >= 0);
        },
      );
    });

    it("retry events and the final error never show URL credentials", async () => {
      await withRoute(via, [{ status: 503 }], async (run, options) => {
        const withCredentials = host.url(run.route).replace("http://", "http://alice:s3cret-pw@");
        const error = await expectCode(
          resolve(withCredentials, { ...options, retries: 1 }),
          "ERR_HUBCACHE_HTTP",
        );
        assert.equal(run.retries.length, 1);
        assert.doesNotMatch(JSON.stringify([run.events, error.toJSON(), error.hint]), /s3cret-pw/);
        const sent = host.requestsTo(run.route)[0]?.headers.authorization;
        assert.equal(sent, `Basic ${Buffer.from("alice:s3cret-pw").toString("base64")}`);
      });
    });

    for (const status of [408, 429, 500, 502, 504]) {
      it(`HTTP ${status} is retried with backoff`, async () => {
        await withRoute(via, [{ status }, ok(V1_TGZ)], async (run, options) => {
          const dir = await resolve(host.url(run.route), options);
          assert.equal(host.requestsTo(run.route).length, 2);
          assert.equal(run.retries.length, 1);
          await assertTree(dir, V1);
          const delayMs = run.retries[0]?.delayMs ?? 0;
          assert.ok(delayMs > 0, `a backoff before the retry (${delayMs} ms)`);
        });
      });
    }

    const noRetry: [number, string][] = [
      [400, "ERR_HUBCACHE_HTTP"],
      [401, "ERR_HUBCACHE_UNAUTHORIZED"],
      [403, "ERR_HUBCACHE_FORBIDDEN"],
      [404, "ERR_HUBCACHE_NOT_FOUND"],
    ];
    for (const [status, code] of noRetry) {
      it(`HTTP ${status} is never retried (${code}, with the status and a hint)`, async () => {
        await withRoute(via, [{ status }, ok(V1_TGZ)], async (run, options) => {
          const error = await expectCode(resolve(host.url(run.route), options), code);
          assert.equal(error.status, status);
          // The hint is about the host that was asked, not tfhub.dev.
          const asked = new URL(host.origin).host;
          if (status !== 400) {
            assert.ok(error.hint?.includes(asked), `the hint names ${asked}: ${error.hint}`);
          }
          assert.doesNotMatch(error.hint ?? "", /tfhub\.dev|kaggle/);
          assert.equal(host.requestsTo(run.route).length, 1);
          assert.equal(run.retries.length, 0);
          await assertNoTrace(run.sandbox);
        });
      });
    }

    it("when the retries run out, the last error is reported with its status", async () => {
      await withRoute(via, [{ status: 503 }], async (run, options) => {
        const error = await expectCode(
          resolve(host.url(run.route), { ...options, retries: 2 }),
          "ERR_HUBCACHE_HTTP",
        );
        assert.equal(error.status, 503);
        assert.match(error.message, /Gave up after 2 retries/);
        assert.equal(host.requestsTo(run.route).length, 3);
        await assertNoTrace(run.sandbox);
      });
    });

    it("a Retry-After longer than hubcache will wait fails at once instead of hanging", async () => {
      await withRoute(via, [{ status: 429, headers: { "retry-after": "3600" } }], async (run, options) => {
        const started = Date.now();
        const error = await expectCode(resolve(host.url(run.route), options), "ERR_HUBCACHE_HTTP");
        assert.equal(error.status, 429);
        assert.equal(host.requestsTo(run.route).length, 1);
        assert.equal(run.retries.length, 0, "no retry was announced, let alone waited for");
        // The message says why, and the hint what to do: not "check the handle".
        assert.match(error.message, /asked to wait 3600 s \(Retry-After\)/);
        assert.match(error.hint ?? "", /try again after the time it asked for/);
        // "At once": well before even the longest backoff (30 s), let alone the hour asked for.
        const elapsed = Date.now() - started;
        assert.ok(elapsed < 15_000, `failed after ${elapsed} ms`);
      });
    });

    it("a refused connection is retried, then reported as ERR_HUBCACHE_NETWORK with attempts and time", async () => {
      const closed = await startFlakyHost();
      const url = closed.url("/gone");
      await closed.close();
      const sandbox = await makeSandbox();
      const events: HubcacheEvent[] = [];
      try {
        const error = await expectCode(
          resolve(url, {
            cacheDir: sandbox.cacheDir,
            retries: 2,
            retryDelayMs: 5,
            env: pathEnv(via),
            onEvent: (e) => events.push(e),
          }),
          "ERR_HUBCACHE_NETWORK",
        );
        // Direct, the socket says ECONNREFUSED; a proxy answers the tunnel with 502, as real ones do.
        assert.match(error.message, via === "direct" ? /ECONNREFUSED/ : /proxy.*502/i);
        assert.match(error.message, /Gave up after 2 retries \(3 attempts over \d+\.\d s\)/);
        assert.match(error.hint ?? "", /HUBCACHE_RETRIES/);
        const refused = `Nothing accepts connections at ${new URL(url).host}: check the host name and port`;
        if (via === "direct") assert.ok(error.hint?.includes(refused), error.hint);
        const retries = events.filter((e) => e.type === "retry");
        assert.equal(retries.length, 2);
        assert.deepEqual(
          retries.map((r) => [r.attempt, r.retries, r.url, r.code]),
          [
            [1, 2, `${url}?tf-hub-format=compressed`, "ERR_HUBCACHE_NETWORK"],
            [2, 2, `${url}?tf-hub-format=compressed`, "ERR_HUBCACHE_NETWORK"],
          ],
        );
        await assertNoTrace(sandbox);
      } finally {
        await sandbox.cleanup();
      }
    });
  });

  describe(`${via}: broken bodies: resume or restart`, () => {
    it("a reset mid-body is resumed with Range + If-Range, and only the missing bytes are sent again", async () => {
      const cut = 400_000;
      await withRoute(
        via,
        [ok(V1_TGZ, { ranges: true, cutAfter: cut }), ok(V1_TGZ, { ranges: true })],
        async (run, options) => {
          const dir = await resolve(host.url(run.route), options);
          await assertTree(dir, V1);
          const [first, second] = host.requestsTo(run.route);
          assert.equal(first?.headers.range, undefined);
          const start = Number(/^bytes=(\d+)-$/.exec(String(second?.headers.range))?.[1]);
          assert.ok(start > 0 && start <= cut, `resumed at ${start}`);
          assert.equal(second?.headers["if-range"], '"v1"');
          // Everything was sent once, plus at most what was in flight when the connection broke.
          const served = host.bytesServed(run.route);
          assert.equal(served, cut + (V1_TGZ.length - start));
          assert.ok(served < V1_TGZ.length * 1.3);
          assert.match(run.retries[0]?.reason ?? "", /resuming at byte \d+/);
        },
      );
    });

    it("several resets in a row are each resumed from where the stream stopped", async () => {
      await withRoute(
        via,
        [
          ok(V1_TGZ, { ranges: true, cutAfter: 300_000 }),
          ok(V1_TGZ, { ranges: true, cutAfter: 300_000 }),
          ok(V1_TGZ, { ranges: true, cutAfter: 300_000 }),
          ok(V1_TGZ, { ranges: true }),
        ],
        async (run, options) => {
          const dir = await resolve(host.url(run.route), options);
          await assertTree(dir, V1);
          const starts = host
            .requestsTo(run.route)
            .map((r) => Number(/(\d+)/.exec(String(r.headers.range ?? "0"))?.[1]));
          assert.equal(starts.length, 4);
          for (let i = 1; i < starts.length; i++) assert.ok((starts[i] ?? 0) > (starts[i - 1] ?? 0));
          assert.ok(host.bytesServed(run.route) < V1_TGZ.length * 1.5);
        },
      );
    });

    it("a host without ranges or validators restarts cleanly: the first attempt's files are wiped", async () => {
      // The second answer is a different model: if anything of the first attempt were kept, the tree would show it.
      const v2 = modelEntries("v2");
      await withRoute(via, [ok(V1_TGZ, { cutAfter: 500_000 }), ok(gzip(tarOf(v2)))], async (run, options) => {
        const dir = await resolve(host.url(run.route), options);
        await assertTree(dir, v2);
        assert.equal(host.requestsTo(run.route)[1]?.headers.range, undefined);
        assert.match(run.retries[0]?.reason ?? "", /cannot resume, starting over/);
      });
    });

    it("a host whose file changed (If-Range no longer matches, 200) restarts cleanly", async () => {
      const v2 = modelEntries("v2");
      const V2_TGZ = gzip(tarOf(v2));
      await withRoute(
        via,
        [
          ok(V1_TGZ, { ranges: true, etag: '"v1"', cutAfter: 500_000 }),
          ok(V2_TGZ, { ranges: true, etag: '"v2"' }),
        ],
        async (run, options) => {
          const dir = await resolve(host.url(run.route), options);
          await assertTree(dir, v2);
          const requests = host.requestsTo(run.route);
          assert.equal(requests.length, 3, "cut, range refused with 200, fresh download");
          assert.equal(requests[1]?.headers["if-range"], '"v1"');
          assert.equal(requests[2]?.headers.range, undefined);
        },
      );
    });

    it("a range answered 416 restarts cleanly from byte 0", async () => {
      await withRoute(
        via,
        [
          ok(V1_TGZ, { ranges: true, cutAfter: 500_000 }),
          { status: 416, headers: { "content-range": `bytes */${V1_TGZ.length}` } },
          ok(V1_TGZ, { ranges: true }),
        ],
        async (run, options) => {
          await assertTree(await resolve(host.url(run.route), options), V1);
          const requests = host.requestsTo(run.route);
          assert.equal(requests.length, 3, "cut, 416, fresh download");
          assert.equal(requests[2]?.headers.range, undefined);
        },
      );
    });

    it("a 206 whose Content-Range does not start where the stream stopped restarts cleanly", async () => {
      const wrong = `bytes 0-${V1_TGZ.length - 1}/${V1_TGZ.length}`;
      await withRoute(
        via,
        [
          ok(V1_TGZ, { ranges: true, cutAfter: 500_000 }),
          { status: 206, body: V1_TGZ, headers: { "content-range": wrong, etag: '"v1"' } },
          ok(V1_TGZ, { ranges: true }),
        ],
        async (run, options) => {
          await assertTree(await resolve(host.url(run.route), options), V1);
          assert.equal(host.requestsTo(run.route).length, 3);
        },
      );
    });

    // A stalled answer never ends, so any idle timeout catches it; the healthy answers share that
    // timeout, so where a run must succeed it is 2 s (a loaded machine can pause a healthy transfer
    // for a few hundred ms). 300 ms only where any timeout at all gives the expected result.
    const STALL_MS = 2000;

    it("a stall before the headers times out (ERR_HUBCACHE_TIMEOUT) and is retried", async () => {
      await withRoute(via, [{ stallBeforeHeaders: true }, ok(V1_TGZ)], async (run, options) => {
        const dir = await resolve(host.url(run.route), { ...options, idleTimeoutMs: STALL_MS });
        await assertTree(dir, V1);
        assert.match(run.retries[0]?.reason ?? "", /HUBCACHE_IDLE_TIMEOUT/);
      });
      await withRoute(via, [{ stallBeforeHeaders: true }], async (run, options) => {
        await expectCode(
          resolve(host.url(run.route), { ...options, idleTimeoutMs: 300, retries: 0 }),
          "ERR_HUBCACHE_TIMEOUT",
        );
        await assertNoTrace(run.sandbox);
      });
    });

    it("a stall mid-body times out and is resumed", async () => {
      await withRoute(
        via,
        [ok(V1_TGZ, { ranges: true, stallAfter: 200_000 }), ok(V1_TGZ, { ranges: true })],
        async (run, options) => {
          const dir = await resolve(host.url(run.route), { ...options, idleTimeoutMs: STALL_MS });
          await assertTree(dir, V1);
          assert.match(host.requestsTo(run.route)[1]?.headers.range ?? "", /^bytes=\d+-$/);
        },
      );
    });

    it("a stall mid-body with no retries left is ERR_HUBCACHE_TIMEOUT and leaves no trace", async () => {
      await withRoute(via, [ok(V1_TGZ, { stallAfter: 200_000 })], async (run, options) => {
        const error = await expectCode(
          // 2 s here too: a pause before the headers would time out with another message.
          resolve(host.url(run.route), { ...options, idleTimeoutMs: STALL_MS, retries: 0 }),
          "ERR_HUBCACHE_TIMEOUT",
        );
        assert.match(error.message, /stalled/);
        await assertNoTrace(run.sandbox);
      });
    });

    it("HUBCACHE_IDLE_TIMEOUT and HUBCACHE_RETRIES are read from the environment", async () => {
      await withRoute(via, [ok(V1_TGZ, { stallAfter: 100_000 })], async (run, options) => {
        const { idleTimeoutMs: _unused, ...rest } = options;
        const started = Date.now();
        const error = await expectCode(
          resolve(host.url(run.route), {
            ...rest,
            env: { ...pathEnv(via), HUBCACHE_IDLE_TIMEOUT: "0.3", HUBCACHE_RETRIES: "0" },
          }),
          "ERR_HUBCACHE_TIMEOUT",
        );
        assert.equal(host.requestsTo(run.route).length, 1);
        // The variable's 0.3 s, not the default 30 s, ended it (a generous bound on a slow machine).
        const elapsed = Date.now() - started;
        assert.ok(elapsed < 15_000, `timed out after ${elapsed} ms: HUBCACHE_IDLE_TIMEOUT was ignored`);
        assert.match(error.message, /stalled: no data for 0 s/);
      });
    });
  });
  describe(`${via}: the same answer on both HTTP stacks`, () => {
    it("a gzip Content-Encoding is decoded (the archive inside is the model)", async () => {
      const encoded = gzip(V1_TGZ);
      await withRoute(
        via,
        [ok(encoded, { headers: { "content-encoding": "gzip" } })],
        async (run, options) => {
          await assertTree(await resolve(host.url(run.route), options), V1);
        },
      );
    });

    it("a br Content-Encoding is decoded too", async () => {
      const encoded = zlib.brotliCompressSync(V1_TGZ);
      await withRoute(via, [ok(encoded, { headers: { "content-encoding": "br" } })], async (run, options) => {
        await assertTree(await resolve(host.url(run.route), options), V1);
      });
    });

    it("a coding neither stack decodes is ERR_HUBCACHE_UNEXPECTED_RESPONSE, not retried", async () => {
      await withRoute(
        via,
        [ok(V1_TGZ, { headers: { "content-encoding": "zstd" } })],
        async (run, options) => {
          const error = await expectCode(
            resolve(host.url(run.route), options),
            "ERR_HUBCACHE_UNEXPECTED_RESPONSE",
          );
          assert.match(error.message, /Content-Encoding "zstd"/);
          assert.equal(host.requestsTo(run.route).length, 1);
          assert.equal(run.retries.length, 0);
          await assertNoTrace(run.sandbox);
        },
      );
    });

    it("a redirect is followed (to another path) and the model resolves", async () => {
      const target = `/net/target-${via}`;
      host.route(target, [ok(V1_TGZ)]);
      await withRoute(via, [{ redirect: target }], async (run, options) => {
        await assertTree(await resolve(host.url(run.route), options), V1);
        assert.equal(host.requestsTo(target).length, 1);
      });
    });

    it("a redirect whose Location has user:password@ sends them as Basic auth, never in the URL", async () => {
      const target = `/net/target-credentials-${via}`;
      host.route(target, [ok(V1_TGZ)]);
      const location = host.url(target).replace("http://", "http://bob:p%40ss@");
      await withRoute(via, [{ redirect: location }], async (run, options) => {
        await assertTree(await resolve(host.url(run.route), options), V1);
        const [request] = host.requestsTo(target);
        assert.equal(request?.headers.authorization, `Basic ${Buffer.from("bob:p@ss").toString("base64")}`);
        assert.doesNotMatch(JSON.stringify(run.events), /p%40ss|p@ss/);
      });
    });

    it("a redirect loop is ERR_HUBCACHE_HTTP with the 3xx status after 20 hops, not retried", async () => {
      await withRoute(
        via,
        (request) => ({ redirect: request.url }),
        async (run, options) => {
          const error = await expectCode(resolve(host.url(run.route), options), "ERR_HUBCACHE_HTTP");
          assert.equal(error.status, 302);
          assert.match(error.message, /after 20 redirects \(a redirect loop\?\)/);
          assert.equal(host.requestsTo(run.route).length, 21);
          assert.equal(run.retries.length, 0);
          await assertNoTrace(run.sandbox);
        },
      );
    });

    it("a redirect to a scheme other than http(s) is ERR_HUBCACHE_HTTP", async () => {
      await withRoute(via, [{ redirect: "ftp://127.0.0.1/model.tar.gz" }], async (run, options) => {
        const error = await expectCode(resolve(host.url(run.route), options), "ERR_HUBCACHE_HTTP");
        assert.equal(error.status, 302);
        assert.match(error.message, /ftp:/);
        assert.equal(run.retries.length, 0);
      });
    });

    it("a 302 without a Location is ERR_HUBCACHE_HTTP with status 302", async () => {
      await withRoute(via, [{ status: 302 }], async (run, options) => {
        const error = await expectCode(resolve(host.url(run.route), options), "ERR_HUBCACHE_HTTP");
        assert.equal(error.status, 302);
        assert.equal(host.requestsTo(run.route).length, 1);
      });
    });

    // Raw answers (written on the socket as they are): odd framing and statuses. `retried`: is a
    // retry event expected before the final outcome (a retry cannot fix malformed HTTP).
    const head = (text: string): Buffer => Buffer.from(text.replace(/\n/g, "\r\n"));
    const rawCases: { name: string; raw: () => Buffer; code: string; retried: boolean }[] = [
      {
        name: "a chunked body cut mid-chunk",
        raw: () =>
          Buffer.concat([
            head(`HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n${V1_TGZ.length.toString(16)}\n`),
            V1_TGZ.subarray(0, 100),
          ]),
        code: "ERR_HUBCACHE_TRUNCATED",
        retried: true,
      },
      {
        name: "a malformed chunk size",
        raw: () => head("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n5\nhello\nZZ\n"),
        code: "ERR_HUBCACHE_TRUNCATED",
        retried: false,
      },
      {
        name: "a well-formed chunked body",
        raw: () =>
          Buffer.concat([
            head(`HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n${V1_TGZ.length.toString(16)}\n`),
            V1_TGZ,
            head("\n0\n\n"),
          ]),
        code: "ok",
        retried: false,
      },
      {
        name: "a 103 Early Hints before the answer",
        raw: () =>
          Buffer.concat([
            head(
              `HTTP/1.1 103 Early Hints\nLink: </x>\n\nHTTP/1.1 200 OK\nContent-Length: ${V1_TGZ.length}\n\n`,
            ),
            V1_TGZ,
          ]),
        code: "ok",
        retried: false,
      },
      {
        name: "a 204 No Content",
        raw: () => head("HTTP/1.1 204 No Content\n\n"),
        code: "ERR_HUBCACHE_NOT_AN_ARCHIVE",
        retried: false,
      },
      {
        name: "a 304 Not Modified",
        raw: () => head("HTTP/1.1 304 Not Modified\n\n"),
        code: "ERR_HUBCACHE_HTTP",
        retried: false,
      },
      {
        name: "an answer that is not HTTP",
        raw: () => head("NOT HTTP AT ALL\n\n"),
        code: "ERR_HUBCACHE_NETWORK",
        retried: false,
      },
    ];
    for (const { name, raw, code, retried } of rawCases) {
      it(`${name}: ${code === "ok" ? "resolves" : code}${retried ? " after a retry" : ", not retried"}`, async () => {
        await withRoute(via, [{ raw: raw() }], async (run, options) => {
          const attempt = resolve(host.url(run.route), { ...options, retries: 1 });
          if (code === "ok") await assertTree(await attempt, V1);
          else await expectCode(attempt, code);
          assert.equal(run.retries.length, retried ? 1 : 0);
          if (code !== "ok") await assertNoTrace(run.sandbox);
        });
      });
    }

    it("a body shorter than its Content-Length is retried, then ERR_HUBCACHE_TRUNCATED", async () => {
      const declaredLength = V1_TGZ.length + 1000;
      await withRoute(via, [ok(V1_TGZ, { declaredLength })], async (run, options) => {
        const error = await expectCode(
          resolve(host.url(run.route), { ...options, retries: 1 }),
          "ERR_HUBCACHE_TRUNCATED",
        );
        assert.match(error.message, /cut short/);
        assert.equal(run.retries.length, 1);
        await assertNoTrace(run.sandbox);
      });
    });
  });

  describe(`${via}: minimum transfer rate and deadline`, () => {
    // 40 bytes every 20 ms is about 2 KB/s: above the limit where a run must succeed, far below it
    // where it must fail. The window is short so a test takes a fraction of a second.
    const TRICKLE = { bytes: 40, everyMs: 20 };
    const FAST_LIMITS = { minSpeedBytesPerSec: 50_000, minSpeedWindowMs: 300 };

    it("a host that trickles bytes is cut off below the minimum rate: ERR_HUBCACHE_TIMEOUT saying the rate and the setting", async () => {
      await withRoute(via, [ok(SMALL_TGZ, { trickle: TRICKLE })], async (run, options) => {
        const started = Date.now();
        const error = await expectCode(
          resolve(host.url(run.route), { ...options, ...FAST_LIMITS, retries: 0 }),
          "ERR_HUBCACHE_TIMEOUT",
        );
        assert.ok(Date.now() - started < 5000, "cut off within a few windows, not after the whole trickle");
        assert.match(
          error.message,
          /too slow: [\d.]+ (B|KiB)\/s over the last 0 s, below the minimum of 48\.8 KiB\/s/,
        );
        assert.match(error.hint ?? "", /HUBCACHE_MIN_SPEED \(bytes\/s, 0 turns the check off\)/);
        await assertNoTrace(run.sandbox);
      });
    });

    it("a transfer below the rate is resumed with a Range, like a stall", async () => {
      await withRoute(
        via,
        [ok(V1_TGZ, { ranges: true, trickle: TRICKLE }), ok(V1_TGZ, { ranges: true })],
        async (run, options) => {
          const dir = await resolve(host.url(run.route), { ...options, ...FAST_LIMITS });
          await assertTree(dir, V1);
          assert.match(host.requestsTo(run.route)[1]?.headers.range ?? "", /^bytes=[1-9]\d*-$/);
          assert.match(run.retries[0]?.reason ?? "", /HUBCACHE_TOO_SLOW after \d+ bytes; resuming at byte/);
          assert.equal(run.retries[0]?.code, "ERR_HUBCACHE_TIMEOUT");
        },
      );
    });

    it("HUBCACHE_MIN_SPEED and HUBCACHE_MIN_SPEED_TIME are read from the environment; 0 turns the check off", async () => {
      await withRoute(via, [ok(SMALL_TGZ, { trickle: TRICKLE })], async (run, options) => {
        const env = { ...pathEnv(via), HUBCACHE_MIN_SPEED: "50000", HUBCACHE_MIN_SPEED_TIME: "0.3" };
        await expectCode(
          resolve(host.url(run.route), { ...options, env, retries: 0 }),
          "ERR_HUBCACHE_TIMEOUT",
        );
      });
      await withRoute(via, [ok(SMALL_TGZ, { trickle: TRICKLE })], async (run, options) => {
        const env = { ...pathEnv(via), HUBCACHE_MIN_SPEED: "0", HUBCACHE_MIN_SPEED_TIME: "0.3" };
        await assertTree(await resolve(host.url(run.route), { ...options, env, retries: 0 }), SMALL);
      });
    });

    it("a download past its deadline is ERR_HUBCACHE_TIMEOUT, never retried", async () => {
      await withRoute(via, [ok(SMALL_TGZ, { trickle: TRICKLE })], async (run, options) => {
        const error = await expectCode(
          resolve(host.url(run.route), { ...options, minSpeedBytesPerSec: 0, deadlineMs: 400 }),
          "ERR_HUBCACHE_TIMEOUT",
        );
        assert.match(error.message, /did not finish within its deadline of 0 s \(\d+ of \d+ bytes\)/);
        assert.match(error.hint ?? "", /HUBCACHE_DEADLINE/);
        assert.equal(host.requestsTo(run.route).length, 1);
        assert.equal(run.retries.length, 0);
        await assertNoTrace(run.sandbox);
      });
    });

    it("HUBCACHE_DEADLINE is read from the environment, and a backoff past it is not waited for", async () => {
      await withRoute(via, [{ status: 503, headers: { "retry-after": "5" } }], async (run, options) => {
        const started = Date.now();
        const env = { ...pathEnv(via), HUBCACHE_DEADLINE: "1" };
        const error = await expectCode(
          resolve(host.url(run.route), { ...options, env }),
          "ERR_HUBCACHE_HTTP",
        );
        assert.ok(Date.now() - started < 4000, "did not wait 5 s");
        assert.match(
          error.message,
          /Gave up after 0 retries \(1 attempt over [\d.]+ s; the deadline of 1 s comes first\)/,
        );
        assert.equal(host.requestsTo(run.route).length, 1);
      });
    });
  });
}
