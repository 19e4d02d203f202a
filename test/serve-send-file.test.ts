// How the mirror sends a file of a local entry (files.ts, sendPositional): whole and by ranges that
// cross its 1 MiB blocks, byte for byte; a file that got shorter after it was looked up is cut, not
// padded or ended as if whole; a client that goes away mid-body ends the send (nothing hangs), and
// the server goes on answering.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { Readable } from "node:stream";
import { after, before, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { serveFile } from "../src/serve/files.js";
import { localModelFiles } from "../src/serve/local-files.js";
import type { ModelFiles } from "../src/serve/model-files.js";
import { tempDir } from "./helpers/fixtures.js";
import { until } from "./helpers/wait.js";

const SIZE = (3 << 20) + 12_345;
let dir: string;
let content: Buffer;
let server: http.Server;
let origin: string;
/** Each request's serveFile, settled: "done" or "failed". */
const settled: Promise<string>[] = [];

/** Each response's writableFinished when it closed (the access log's "finished" or "(cut)"). */
const finishedAtClose: boolean[] = [];

/** The file's bytes as a stream whose end (or failure, as a bucket's digest check) comes late. */
function lateEnding(bytes: Buffer, fail: boolean): Readable {
  let pushed = false;
  return new Readable({
    read() {
      if (pushed) return;
      pushed = true;
      for (let at = 0; at < bytes.length; at += 64 * 1024) this.push(bytes.subarray(at, at + 64 * 1024));
      setTimeout(() => (fail ? this.destroy(new Error("the digest does not match")) : this.push(null)), 300);
    },
  });
}

before(async () => {
  dir = await tempDir("send-file-");
  content = randomBytes(SIZE);
  await fs.writeFile(path.join(dir, "weights.bin"), content);
  const local = localModelFiles(dir, "0".repeat(40));
  // The local files as a ModelFiles without the positional form (as a bucket's), or with it.
  const base = (): ModelFiles => ({
    hash: local.hash,
    record: local.record,
    modelRoot: () => local.modelRoot(),
    list: () => local.list(),
    stat: (relative) => local.stat(relative),
    open: (file, range) => local.open(file, range),
  });
  // The same files, but a file's size is known only 300 ms after it is asked for.
  const slowSize: ModelFiles = {
    ...base(),
    openPositional: async (file) => {
      const opened = await local.openPositional!(file);
      return {
        read: (buffer, length, position) => opened.read(buffer, length, position),
        size: () => sleep(300).then(() => opened.size()),
        close: () => opened.close(),
      };
    },
  };
  // As a bucket's files are: streams only (here ending, or failing, 300 ms after their last bytes).
  const streamed = (fail: boolean): ModelFiles => ({
    ...base(),
    open: async () => lateEnding(content, fail),
  });
  server = http.createServer((req, res) => {
    res.once("close", () => finishedAtClose.push(res.writableFinished));
    const route = req.url ?? "/";
    const name = route === "/shrinks" ? "shrinks.bin" : route === "/grows" ? "grows.bin" : "weights.bin";
    const files =
      route === "/slow-size"
        ? slowSize
        : route === "/stream"
          ? streamed(false)
          : route === "/stream-fails-at-end"
            ? streamed(true)
            : local;
    const run = (async () => {
      const file = await files.stat(name);
      assert.ok(file, name);
      // Looked up at its full size, then cut to a third (or grown) before it is opened and sent.
      if (name === "shrinks.bin") await fs.truncate(path.join(dir, name), Math.floor(SIZE / 3));
      if (name === "grows.bin") await fs.appendFile(path.join(dir, name), "more");
      await serveFile(req, res, { files, file, headers: {} });
    })();
    settled.push(
      run.then(
        () => "done",
        () => "failed",
      ),
    );
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => new Promise<void>((done) => server.close(() => done())));

test("a whole file and ranges across its blocks arrive byte for byte", async () => {
  const whole = await fetch(`${origin}/weights.bin`);
  assert.equal(whole.status, 200);
  assert.equal(whole.headers.get("content-length"), String(SIZE));
  assert.ok(Buffer.from(await whole.arrayBuffer()).equals(content));
  for (const [start, end] of [
    [0, 0],
    [1000, (1 << 20) + 5],
    [(1 << 20) - 1, (2 << 20) + 1],
    [SIZE - 10, SIZE - 1],
  ] as const) {
    const part = await fetch(`${origin}/weights.bin`, { headers: { range: `bytes=${start}-${end}` } });
    assert.equal(part.status, 206);
    assert.equal(part.headers.get("content-range"), `bytes ${start}-${end}/${SIZE}`);
    assert.ok(
      Buffer.from(await part.arrayBuffer()).equals(content.subarray(start, end + 1)),
      `${start}-${end}`,
    );
  }
});

test("a file that got shorter after it was looked up is cut off, never ended as whole", async () => {
  await fs.writeFile(path.join(dir, "shrinks.bin"), content);
  const answer = await fetch(`${origin}/shrinks`);
  assert.equal(answer.status, 200);
  assert.equal(answer.headers.get("content-length"), String(SIZE));
  await assert.rejects(answer.arrayBuffer());
  // The server is fine and answers the next request whole.
  const next = await fetch(`${origin}/weights.bin`);
  assert.ok(Buffer.from(await next.arrayBuffer()).equals(content));
});

/** A client that reads the body to its Content-Length, then hangs up at once: the bytes it got. */
function hangUpAtTheEnd(url: string): Promise<{ status: number; received: number; complete: boolean }> {
  return new Promise((done) => {
    const request = http.get(url, { agent: false }, (res) => {
      const expected = Number(res.headers["content-length"]);
      let received = 0;
      res.on("data", (chunk: Buffer) => {
        received += chunk.length;
        if (received >= expected) {
          request.destroy();
          done({ status: res.statusCode ?? 0, received, complete: true });
        }
      });
      res.on("error", () => undefined);
      res.on("close", () => done({ status: res.statusCode ?? 0, received, complete: false }));
    });
    // Cut before any byte of the body: the answer's head never came.
    request.on("error", () => done({ status: 0, received: 0, complete: false }));
  });
}

test("a file that grew after it was looked up is cut before its last bytes", async () => {
  await fs.writeFile(path.join(dir, "grows.bin"), content);
  const got = await hangUpAtTheEnd(`${origin}/grows`);
  assert.equal(got.status, 200);
  assert.equal(got.complete, false);
  assert.ok(got.received > 0 && got.received < SIZE, `${got.received} bytes`);
});

test("the last bytes end the response: a client that hangs up at once finds it finished", async () => {
  for (const route of ["/weights.bin", "/slow-size", "/stream"]) {
    const before = finishedAtClose.length;
    const got = await hangUpAtTheEnd(`${origin}${route}`);
    assert.equal(got.received, SIZE, route);
    await until(() => finishedAtClose.length > before, `${route}: the response closed`);
    assert.equal(finishedAtClose[before], true, `${route}: finished, not cut`);
  }
});

test("a stream that fails at its end (a bucket's digest check) is cut before its last bytes", async () => {
  const got = await hangUpAtTheEnd(`${origin}/stream-fails-at-end`);
  assert.equal(got.status, 200);
  assert.equal(got.complete, false);
  assert.ok(got.received > 0 && got.received < SIZE, `${got.received} bytes`);
});

test("a client that goes away mid-body ends the send; nothing waits on it", async () => {
  const before = settled.length;
  await new Promise<void>((done, fail) => {
    const request = http.get(`${origin}/weights.bin`, (res) => {
      res.once("data", () => {
        request.destroy();
        done();
      });
    });
    request.on("error", (error) => (request.destroyed ? undefined : fail(error)));
  });
  const outcome = await settled[before];
  assert.ok(outcome === "done" || outcome === "failed");
  const next = await fetch(`${origin}/weights.bin`);
  assert.ok(Buffer.from(await next.arrayBuffer()).equals(content));
});
