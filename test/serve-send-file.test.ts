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
import { after, before, test } from "node:test";
import { serveFile } from "../src/serve/files.js";
import { localModelFiles } from "../src/serve/local-files.js";
import { tempDir } from "./helpers/fixtures.js";

const SIZE = (3 << 20) + 12_345;
let dir: string;
let content: Buffer;
let server: http.Server;
let origin: string;
/** Each request's serveFile, settled: "done" or "failed". */
const settled: Promise<string>[] = [];

before(async () => {
  dir = await tempDir("send-file-");
  content = randomBytes(SIZE);
  await fs.writeFile(path.join(dir, "weights.bin"), content);
  const files = localModelFiles(dir, "0".repeat(40));
  server = http.createServer((req, res) => {
    const name = req.url === "/shrinks" ? "shrinks.bin" : "weights.bin";
    const run = (async () => {
      const file = await files.stat(name);
      assert.ok(file, name);
      // Looked up at its full size, then cut to a third before it is opened and sent.
      if (name === "shrinks.bin") await fs.truncate(path.join(dir, name), Math.floor(SIZE / 3));
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
