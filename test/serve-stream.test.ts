/**
 * `hubcache serve` streaming a cold archive: clients receive the upstream's bytes while the
 * mirror's one download is still running (the stand-in hub pauses mid-body until the clients have
 * received a good part of it), late joiners from the start, a dropped client cancels nothing, and
 * an upstream that dies mid-body cuts every streaming client and publishes nothing. Python's
 * resolver and a hubcache client extract the streamed gzip as it comes.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, promises as fs } from "node:fs";
import http from "node:http";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import * as tar from "tar";
import { readTree, realisticWeights, tempDir } from "./helpers/fixtures.js";
import { startFlakyHost } from "./helpers/flaky-host.js";
import { startPausingProxy } from "./helpers/pausing-proxy.js";
import { type HubServer, startHubServer } from "./helpers/hub-server.js";
import { type Mirror, startMirror } from "./helpers/mirror.js";
import {
  REPO_ROOT,
  TEST_TIMEOUT_MS,
  findPython,
  leftovers,
  runCli,
  start,
  waitUntil,
} from "./helpers/processes.js";

const LIMIT = { timeout: TEST_TIMEOUT_MS };
const sha1 = (text: string): string => createHash("sha1").update(text).digest("hex");
const python = findPython();
const PYTHON_HTTP = path.join(REPO_ROOT, "test", "helpers", "tfhub_http_download.py");

/** Where the hub pauses its one answer, and what each client must have received meanwhile. */
const PAUSE_AT = 512 * 1024;
const RECEIVED_WHILE_PAUSED = 256 * 1024;

let hub: HubServer;
let modelDir: string;
let archive: Buffer;
let expected: Map<string, Buffer>;

before(async () => {
  hub = await startHubServer();
  modelDir = await tempDir("stream-model-");
  await fs.mkdir(path.join(modelDir, "variables"));
  await fs.writeFile(path.join(modelDir, "saved_model.pb"), realisticWeights(8192, 7));
  await fs.writeFile(path.join(modelDir, "variables", "variables.index"), realisticWeights(1024, 3));
  await fs.writeFile(
    path.join(modelDir, "variables", "variables.data-00000-of-00001"),
    realisticWeights(3 << 20),
  );
  // saved_model.pb first: a client has it whole long before the pause.
  const stream = tar.c({ cwd: modelDir, gzip: true, portable: true }, ["saved_model.pb", "variables"]);
  const chunks: Buffer[] = [];
  for await (const chunk of stream as AsyncIterable<Buffer>) chunks.push(chunk);
  archive = Buffer.concat(chunks);
  assert.ok(archive.length > PAUSE_AT + 256 * 1024, `the archive is big enough (${archive.length})`);
  expected = await readTree(modelDir);
});
after(() => hub.close());

let models = 0;
/** A fresh model path on the hub (each test its own cold model). */
function newModel(): { modelPath: string; handle: string } {
  const modelPath = `/google/stream${++models}/1`;
  hub.add(modelPath, { archive });
  return { modelPath, handle: `https://tfhub.dev${modelPath}` };
}

function downloadsOf(modelPath: string): number {
  return hub.downloads().filter((r) => r.path.startsWith(`/storage${modelPath}.`)).length;
}

async function mirrorFor(cacheDir: string, env: Record<string, string> = {}): Promise<Mirror> {
  return startMirror(["--cache-dir", cacheDir, "--upstream", `tfhub.dev=${hub.origin}`], env);
}

interface StreamingClient {
  received: number;
  headers: http.IncomingHttpHeaders | undefined;
  /** "end": the whole body came (res.complete); "cut": the connection broke first. */
  done: Promise<{ outcome: "end" | "cut"; status: number; body: Buffer }>;
  hangUp(): void;
}

/** A plain HTTP client reading the archive as it comes, counting bytes. */
function streamingGet(url: string, headers: Record<string, string> = {}): StreamingClient {
  const client: StreamingClient = {
    received: 0,
    headers: undefined,
    done: undefined as never,
    hangUp: () => undefined,
  };
  client.done = new Promise((resolve) => {
    const req = http.get(
      url,
      { agent: false, headers: { "accept-encoding": "identity", ...headers } },
      (res) => {
        client.headers = res.headers;
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => {
          chunks.push(chunk);
          client.received += chunk.length;
        });
        res.on("error", () => undefined);
        res.on("close", () =>
          resolve({
            outcome: res.complete ? "end" : "cut",
            status: res.statusCode ?? 0,
            body: Buffer.concat(chunks),
          }),
        );
      },
    );
    req.on("error", () => resolve({ outcome: "cut", status: 0, body: Buffer.alloc(0) }));
    client.hangUp = () => req.destroy();
  });
  return client;
}

/** The files of a tar (plain or gzip'd). */
async function untar(body: Buffer): Promise<Map<string, Buffer>> {
  const dir = await tempDir("untar-");
  const file = `${dir}.tar`;
  await fs.writeFile(file, body);
  await tar.x({ file, cwd: dir });
  return readTree(dir);
}

/** Files below `root` whose path ends with `suffix` (recursively). */
async function findFiles(root: string, suffix: string): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await fs.readdir(root, { withFileTypes: true, recursive: true })) {
    const full = path.join(entry.parentPath, entry.name);
    if (entry.isFile() && full.endsWith(suffix)) found.push(full);
  }
  return found;
}

/** The spool files the mirror process holds open in `tmp` (Linux: /proc/<pid>/fd). */
async function openSpools(mirror: Mirror, tmp: string): Promise<string[]> {
  const fdDir = `/proc/${mirror.run.child.pid ?? 0}/fd`;
  const targets = await Promise.all(
    (await fs.readdir(fdDir)).map((fd) => fs.readlink(path.join(fdDir, fd)).catch(() => "")),
  );
  return targets.filter((target) => target.startsWith(path.join(tmp, "hubcache-spool-")));
}

describe("hubcache serve streams a cold archive", () => {
  test(
    "clients get the upstream's bytes before it has finished: one download, late joiner, a drop",
    LIMIT,
    async () => {
      const cacheDir = await tempDir("mirror-");
      const tmp = await tempDir("mirror-tmp-");
      const mirror = await mirrorFor(cacheDir, { TMPDIR: tmp });
      try {
        const { modelPath, handle } = newModel();
        const url = `${mirror.origin}/tfhub.dev${modelPath}?tf-hub-format=compressed`;
        const pause = hub.pauseDownloadsAfter(PAUSE_AT);
        const early = [streamingGet(url), streamingGet(url)];
        const quitter = streamingGet(url);
        // A client that never reads: it holds neither the download nor the others.
        const stalled = http.get(url, { agent: false }, (res) => res.pause());
        stalled.on("error", () => undefined);
        await pause.reached;
        // The proof: the hub holds the rest of its body until the clients have received this much.
        await waitUntil(
          () => early.every((c) => c.received >= RECEIVED_WHILE_PAUSED) && quitter.received > 0,
          "bytes at the clients while the upstream is paused",
        );
        quitter.hangUp();
        // A plain tar asked for explicitly is not what the spool holds: it waits for the cache.
        const plainTar = streamingGet(`${url}&hubcache-archive=tar`);
        const late = streamingGet(url);
        await waitUntil(() => late.received >= RECEIVED_WHILE_PAUSED, "a late joiner from the start");
        // The spool: open in the mirror's own temp area, already unlinked; nothing in the cache dir
        // but the entry's lock and temp dir.
        assert.deepEqual(await fs.readdir(tmp), []);
        if (existsSync("/proc/self/fd")) assert.equal((await openSpools(mirror, tmp)).length, 1, "one spool");
        const hash = sha1(handle);
        for (const name of await fs.readdir(cacheDir)) {
          assert.ok(name.startsWith(`${hash}.`), `only the entry's own names in the cache dir: ${name}`);
        }
        assert.equal(downloadsOf(modelPath), 1);
        assert.equal(plainTar.headers, undefined, "the explicit plain tar waits");
        pause.resume();
        assert.equal((await quitter.done).outcome, "cut");
        for (const [i, client] of [...early, late].entries()) {
          const result = await client.done;
          assert.equal(result.status, 200);
          assert.equal(result.outcome, "end", `client ${i} got the whole body`);
          assert.ok(result.body.equals(archive), `client ${i}: the upstream's bytes`);
          assert.equal(client.headers?.["content-type"], "application/gzip");
          assert.equal(client.headers?.["content-length"], String(archive.length));
        }
        assert.equal(downloadsOf(modelPath), 1, "exactly one upstream download");
        const entry = path.join(cacheDir, sha1(handle));
        await waitUntil(() => existsSync(entry), "the entry published");
        assert.deepEqual(await readTree(entry), expected);
        const plain = await plainTar.done;
        assert.equal(plain.outcome, "end");
        assert.equal(plainTar.headers?.["content-type"], "application/x-tar");
        assert.deepEqual(await untar(plain.body), expected);
        stalled.destroy();
        // The dropped client cancelled nothing, and a warm request answers from the cache.
        const warm = await streamingGet(url).done;
        assert.equal(warm.outcome, "end");
        assert.equal(downloadsOf(modelPath), 1);
        if (existsSync("/proc/self/fd")) {
          await waitUntil(async () => (await openSpools(mirror, tmp)).length === 0, "the spool closed");
        }
        assert.deepEqual(await fs.readdir(tmp), []);
        assert.deepEqual(await leftovers(cacheDir), []);
      } finally {
        await mirror.stop();
      }
    },
  );

  test(
    "the upstream dying mid-body cuts every streaming client, publishes nothing; the next request downloads again",
    LIMIT,
    async () => {
      const cacheDir = await tempDir("mirror-");
      const mirror = await mirrorFor(cacheDir, { HUBCACHE_RETRIES: "0" });
      try {
        const { modelPath, handle } = newModel();
        const url = `${mirror.origin}/tfhub.dev${modelPath}?tf-hub-format=compressed`;
        const pause = hub.pauseDownloadsAfter(PAUSE_AT);
        const clients = [
          streamingGet(url),
          streamingGet(url),
          streamingGet(url, { "accept-encoding": "gzip" }),
        ];
        await pause.reached;
        await waitUntil(() => clients.every((c) => c.received > 0), "bytes at every client");
        pause.cut();
        for (const [i, client] of clients.entries()) {
          const result = await client.done;
          assert.equal(result.status, 200, `client ${i} was streaming`);
          assert.equal(result.outcome, "cut", `client ${i} sees a cut connection, not a whole body`);
          assert.ok(result.body.length < archive.length);
        }
        assert.equal(clients[2]?.headers?.["content-encoding"], "gzip");
        assert.ok(!existsSync(path.join(cacheDir, sha1(handle))), "nothing published");
        await waitUntil(async () => (await leftovers(cacheDir)).length === 0, "no leftovers");
        const again = await streamingGet(url).done;
        assert.equal(again.outcome, "end");
        assert.ok(again.body.equals(archive));
        assert.equal(downloadsOf(modelPath), 2, "the next request downloaded again");
        await waitUntil(() => existsSync(path.join(cacheDir, sha1(handle))), "published this time");
      } finally {
        await mirror.stop();
      }
    },
  );

  test("a download that starts over from byte 0 cuts its streaming clients", LIMIT, async () => {
    const cacheDir = await tempDir("mirror-");
    const mirror = await mirrorFor(cacheDir);
    try {
      const { modelPath, handle } = newModel();
      const url = `${mirror.origin}/tfhub.dev${modelPath}?tf-hub-format=compressed`;
      const pause = hub.pauseDownloadsAfter(PAUSE_AT);
      const first = streamingGet(url);
      await pause.reached;
      await waitUntil(() => first.received > 0, "bytes at the client");
      pause.cut(); // the hub sends no validator: the mirror cannot resume, it starts over
      // The second attempt pauses too, so a client that comes now joins its spool (not the cache's
      // answer once published: that is the mirror's own packing, not the hub's bytes).
      const secondPause = hub.pauseDownloadsAfter(PAUSE_AT);
      const result = await first.done;
      assert.equal(result.outcome, "cut");
      const entry = path.join(cacheDir, sha1(handle));
      await secondPause.reached;
      assert.equal(downloadsOf(modelPath), 2, "the second attempt");
      const joiner = streamingGet(url);
      await waitUntil(() => joiner.received > 0, "bytes of the second attempt at a new client");
      secondPause.resume();
      const afterRestart = await joiner.done;
      assert.equal(afterRestart.outcome, "end");
      assert.ok(afterRestart.body.equals(archive));
      await waitUntil(() => existsSync(entry), "published once whole");
      assert.deepEqual(await readTree(entry), expected);
      assert.equal(downloadsOf(modelPath), 2);
    } finally {
      await mirror.stop();
    }
  });

  test("a resumed download (Range) is one stream: its clients are not cut", LIMIT, async () => {
    const flaky = await startFlakyHost();
    // Between the mirror and the host: holds the resume until both clients are seen streaming.
    const proxy = await startPausingProxy(flaky.origin);
    const resume = proxy.holdWhen((r) => r.headers.range !== undefined);
    const cacheDir = await tempDir("mirror-");
    const mirror = await startMirror(["--cache-dir", cacheDir, "--upstream", `tfhub.dev=${proxy.endpoint}`]);
    try {
      const modelPath = "/google/resumable/1";
      flaky.route(modelPath, (_request, index) =>
        index === 0 ? { body: archive, ranges: true, cutAfter: PAUSE_AT } : { body: archive, ranges: true },
      );
      const url = `${mirror.origin}/tfhub.dev${modelPath}?tf-hub-format=compressed`;
      const clients = [streamingGet(url), streamingGet(url, { "accept-encoding": "gzip" })];
      await resume.reached;
      await waitUntil(() => clients.every((c) => c.received > 0), "both clients receiving before the resume");
      resume.release();
      for (const [i, client] of clients.entries()) {
        const result = await client.done;
        assert.equal(result.outcome, "end", `client ${i} was not cut`);
        assert.ok(result.body.equals(archive), `client ${i}: the upstream's bytes, across the resume`);
      }
      const asked = flaky.requestsTo(modelPath);
      assert.equal(asked.length, 2);
      assert.equal(asked[1]?.headers.range, `bytes=${PAUSE_AT}-`);
      await waitUntil(
        () => existsSync(path.join(cacheDir, sha1(`https://tfhub.dev${modelPath}`))),
        "published",
      );
    } finally {
      resume.release();
      await mirror.stop();
      await proxy.close();
      await flaky.close();
    }
  });

  test(
    "a spool that cannot be written cuts nothing else: the download goes on, clients get the cache",
    LIMIT,
    async () => {
      const cacheDir = await tempDir("mirror-");
      const mirror = await mirrorFor(cacheDir, { TMPDIR: path.join(cacheDir, "no-such-dir") });
      try {
        const { modelPath, handle } = newModel();
        const url = `${mirror.origin}/tfhub.dev${modelPath}?tf-hub-format=compressed`;
        const result = await streamingGet(url).done;
        assert.equal(result.outcome, "end");
        assert.deepEqual(await untar(result.body), expected);
        assert.ok(existsSync(path.join(cacheDir, sha1(handle))));
        assert.equal(downloadsOf(modelPath), 1);
      } finally {
        await mirror.stop();
      }
    },
  );

  test(
    "Python's resolver and a hubcache client extract the streamed gzip while it downloads",
    { ...LIMIT, skip: python === undefined && "python3 is not installed" },
    async () => {
      const mirror = await mirrorFor(await tempDir("mirror-"));
      try {
        const { modelPath, handle } = newModel();
        const pause = hub.pauseDownloadsAfter(PAUSE_AT);
        const pythonCache = await tempDir("py-");
        const pythonHandle = `${mirror.origin}/tfhub.dev${modelPath}`;
        const py = start(python ?? "python3", [
          PYTHON_HTTP,
          "--cache-dir",
          pythonCache,
          "--handle",
          pythonHandle,
        ]);
        const nodeCache = await tempDir("client-");
        const node = runCli(["resolve", "--cache-dir", nodeCache, handle], {
          env: { HUBCACHE_MIRROR: mirror.origin },
        });
        await pause.reached;
        // Both have saved_model.pb whole in their temp dirs while the hub still holds the rest.
        const whole = async (root: string): Promise<boolean> => {
          for (const file of await findFiles(root, `${path.sep}saved_model.pb`)) {
            if (!file.includes(".tmp")) continue;
            const bytes = await fs.readFile(file).catch(() => Buffer.alloc(0));
            if (bytes.equals(expected.get("saved_model.pb") ?? Buffer.alloc(1))) return true;
          }
          return false;
        };
        await waitUntil(
          async () => (await whole(pythonCache)) && (await whole(nodeCache)),
          "files extracted while paused",
        );
        assert.equal(downloadsOf(modelPath), 1);
        pause.resume();
        const pyDone = await py.done;
        assert.equal(pyDone.code, 0, pyDone.stderr);
        const pyResult = JSON.parse(pyDone.stdout.trim().split("\n").pop() ?? "{}") as { path: string };
        assert.deepEqual(await readTree(pyResult.path), expected);
        const nodeDone = await node;
        assert.equal(nodeDone.code, 0, nodeDone.stderr);
        assert.equal(nodeDone.stdout.trim(), path.join(nodeCache, sha1(handle)));
        assert.deepEqual(await readTree(nodeDone.stdout.trim()), expected);
        assert.equal(downloadsOf(modelPath), 1, "one upstream download");
      } finally {
        await mirror.stop();
      }
    },
  );
});
