// The socket reader of plain-http GETs (src/net/socket-transport.ts) against servers that write
// exact bytes: every framing of RFC 9112 it takes (length, chunked, the end of the connection),
// lines and heads split across reads and across its 1 MiB blocks, informational answers, content
// codings, bodies cut short, malformed answers, backpressure, abort, and what it leaves to node:http.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import net from "node:net";
import { gzipSync } from "node:zlib";
import { after, describe, it } from "node:test";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { nodeTransport } from "../src/net/node-transport.js";
import { framingOf, headerOf, parseHead, socketTransport } from "../src/net/socket-transport.js";
import type { OutgoingRequest, Reply, Transport } from "../src/net/transport.js";
import { DEFAULT_TRANSFER_LIMITS } from "../src/net/transfer-limits.js";

/** A server whose every connection gets `answer`: pieces written in turn, `pause` ms apart. */
interface RawServer {
  url: string;
  requests: string[];
  sockets: net.Socket[];
  close(): Promise<void>;
}

const servers: RawServer[] = [];
after(async () => {
  await Promise.all(servers.map((server) => server.close()));
});

async function rawServer(answer: (Buffer | string)[], pause = 15, end = true): Promise<RawServer> {
  const requests: string[] = [];
  const sockets: net.Socket[] = [];
  const server = net.createServer((socket) => {
    sockets.push(socket);
    socket.on("error", () => undefined);
    let seen = "";
    const reply = async (): Promise<void> => {
      for (const [i, piece] of answer.entries()) {
        if (i > 0) await new Promise((resolve) => setTimeout(resolve, pause));
        if (socket.destroyed) return;
        socket.write(piece);
      }
      if (end) socket.end();
    };
    socket.on("data", (data: Buffer) => {
      seen += data.toString("latin1");
      if (!seen.includes("\r\n\r\n")) return;
      requests.push(seen);
      seen = "";
      void reply();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  const entry: RawServer = {
    url: `http://127.0.0.1:${port}/model/file.bin?x=1`,
    requests,
    sockets,
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
  servers.push(entry);
  return entry;
}

/** A fallback that records what reached it. */
function recordingFallback(): Transport & { sent: OutgoingRequest[] } {
  const sent: OutgoingRequest[] = [];
  return {
    sent,
    limits: DEFAULT_TRANSFER_LIMITS,
    send: async (request) => {
      sent.push(request);
      return {
        status: 299,
        url: request.url,
        header: () => undefined,
        next: async () => null,
        cancel: () => undefined,
      };
    },
  };
}

const transport = socketTransport({ connectTimeoutMs: 2000 }, recordingFallback());

function get(
  url: string,
  headers: Record<string, string> = {},
  signal = new AbortController().signal,
): Promise<Reply> {
  return transport.send({ method: "GET", url, headers, signal });
}

async function bodyOf(reply: Reply): Promise<{ bytes: Buffer; chunks: number }> {
  const parts: Buffer[] = [];
  for (let chunk = await reply.next(); chunk !== null; chunk = await reply.next()) parts.push(chunk);
  return { bytes: Buffer.concat(parts), chunks: parts.length };
}

function chunked(body: Buffer, size: number, extension = ""): Buffer {
  const parts: Buffer[] = [];
  for (let at = 0; at < body.length; at += size) {
    const piece = body.subarray(at, at + size);
    parts.push(Buffer.from(`${piece.length.toString(16)}${extension}\r\n`), piece, Buffer.from("\r\n"));
  }
  return Buffer.concat(parts);
}

/** `bytes` cut into pieces at the given offsets. */
function cut(bytes: Buffer, ...at: number[]): Buffer[] {
  const points = [0, ...at, bytes.length];
  return points.slice(1).map((end, i) => bytes.subarray(points[i], end));
}

const ok = (headers: string): string => `HTTP/1.1 200 OK\r\n${headers}\r\n`;

describe("socket transport: framings", () => {
  it("a Content-Length body of several blocks, sent in odd pieces, arrives whole and in big slices", async () => {
    const body = randomBytes(5 * 1024 * 1024 + 12_345);
    const wire = Buffer.concat([Buffer.from(ok(`content-length: ${body.length}\r\netag: "v1"\r\n`)), body]);
    const server = await rawServer(cut(wire, 7, 40, 70_001, 3_000_000), 5);
    const reply = await get(server.url, { "user-agent": "hubcache-test", range: "bytes=0-" });
    assert.equal(reply.status, 200);
    assert.equal(reply.header("ETag"), '"v1"');
    const { bytes, chunks } = await bodyOf(reply);
    assert.ok(bytes.equals(body));
    assert.ok(chunks < 40, `${chunks} slices for 5 MiB`);
    const request = server.requests[0] ?? "";
    assert.match(request, /^GET \/model\/file\.bin\?x=1 HTTP\/1\.1\r\n/);
    assert.match(request, /\r\nhost: 127\.0\.0\.1:\d+\r\n/);
    assert.match(request, /\r\nrange: bytes=0-\r\n/);
    assert.match(request, /\r\nconnection: close\r\n/);
  });

  it("a chunked body (extensions, trailers) arrives whole, whatever its pieces", async () => {
    const body = randomBytes(3 * 1024 * 1024 + 777);
    const framed = Buffer.concat([
      Buffer.from(ok("transfer-encoding: chunked\r\n")),
      chunked(body, 100_003, ";name=value"),
      Buffer.from("0\r\nx-trailer: 1\r\n\r\n"),
    ]);
    // Cuts inside the head, inside a size line, between a chunk's data and its CRLF.
    const head = ok("transfer-encoding: chunked\r\n").length;
    const server = await rawServer(cut(framed, 5, head + 2, head + 100_003 + 14, head + 100_003 + 23), 5);
    const { bytes } = await bodyOf(await get(server.url));
    assert.ok(bytes.equals(body));
  });

  it("a size line cut where a block ends is read across the two blocks", async () => {
    const body = randomBytes(2 * 1024 * 1024);
    const size = 1024 * 1024 - 62 * 1024 - 1500;
    const head = Buffer.from(ok("transfer-encoding: chunked\r\n"));
    const framed = Buffer.concat([head, chunked(body, size), Buffer.from("0\r\n\r\n")]);
    // Reads end where the pieces do, or sooner: up to the first cut every read leaves a block room
    // for another (64 KiB or more); the second piece (2 KiB, one read) ends in the middle of the
    // second size line, with less room left than a read is given. The reader starts a new block,
    // carrying the half line over.
    const secondLine = head.length + `${size.toString(16)}\r\n`.length + size + 2;
    const cutAt = secondLine + 2;
    assert.ok(cutAt - 2000 <= 1024 * 1024 - 64 * 1024 && cutAt > 1024 * 1024 - 64 * 1024);
    const server = await rawServer(cut(framed, cutAt - 2000, cutAt), 40);
    const { bytes } = await bodyOf(await get(server.url));
    assert.ok(bytes.equals(body));
  });

  it("a body without a length ends with the connection", async () => {
    const body = randomBytes(300_000);
    const server = await rawServer([ok(""), body.subarray(0, 1000), body.subarray(1000)]);
    const { bytes } = await bodyOf(await get(server.url));
    assert.ok(bytes.equals(body));
  });

  it("informational answers (100, 103) before the answer are skipped", async () => {
    const server = await rawServer([
      "HTTP/1.1 100 Continue\r\n\r\n",
      "HTTP/1.1 103 Early Hints\r\nlink: </a>; rel=preload\r\n\r\n",
      `${ok("content-length: 5\r\n")}hello`,
    ]);
    const reply = await get(server.url);
    assert.equal(reply.status, 200);
    assert.equal(reply.header("link"), undefined);
    assert.equal((await bodyOf(reply)).bytes.toString(), "hello");
  });

  it("a gzip'd body is decoded, as node:http's path does", async () => {
    const body = randomBytes(200_000);
    const gz = gzipSync(body);
    const server = await rawServer([
      `${ok(`content-encoding: gzip\r\ncontent-length: ${gz.length}\r\n`)}`,
      gz,
    ]);
    const { bytes } = await bodyOf(await get(server.url));
    assert.ok(bytes.equals(body));
  });

  it("204 and 304 have no body, and the same header twice reads as one list", async () => {
    const server = await rawServer(["HTTP/1.1 304 Not Modified\r\nvary: a\r\nVary: b\r\n\r\n"], 5, false);
    const reply = await get(server.url);
    assert.equal(reply.status, 304);
    assert.equal(reply.header("vary"), "a, b");
    assert.equal(await reply.next(), null);
  });
});

describe("socket transport: broken and malformed answers", () => {
  async function rejection(promise: Promise<unknown>): Promise<string | undefined> {
    try {
      await promise;
    } catch (error) {
      return (error as { code?: string }).code;
    }
    assert.fail("expected a rejection");
  }

  it("a body shorter than its Content-Length is ECONNRESET, after the bytes that came", async () => {
    const server = await rawServer([ok("content-length: 1000\r\n"), "x".repeat(400)]);
    const reply = await get(server.url);
    assert.equal((await reply.next())?.length, 400);
    assert.equal(await rejection(reply.next()), "ECONNRESET");
  });

  it("a chunked body without its last chunk is ECONNRESET", async () => {
    const server = await rawServer([ok("transfer-encoding: chunked\r\n"), "5\r\nhello\r\n"]);
    const reply = await get(server.url);
    assert.equal(await rejection(bodyOf(reply)), "ECONNRESET");
  });

  it("a connection closed before the head is ECONNRESET (retried like node:http's hang up)", async () => {
    const server = await rawServer(["HTTP/1.1 200 OK\r\ncontent-"]);
    assert.equal(await rejection(get(server.url)), "ECONNRESET");
  });

  const malformed: [string, string, string][] = [
    ["not HTTP", "SSH-2.0-OpenSSH\r\n\r\n", "HPE_INVALID_CONSTANT"],
    ["a header line without a name", "HTTP/1.1 200 OK\r\n: x\r\n\r\n", "HPE_INVALID_HEADER_TOKEN"],
    [
      "two lengths",
      "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
      "HPE_UNEXPECTED_CONTENT_LENGTH",
    ],
    [
      "a transfer coding that is not chunked",
      "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n",
      "HPE_INVALID_TRANSFER_ENCODING",
    ],
    ["headers past 16 KiB", `HTTP/1.1 200 OK\r\nx: ${"a".repeat(17_000)}\r\n\r\n`, "HPE_HEADER_OVERFLOW"],
  ];
  for (const [what, head, code] of malformed) {
    it(`${what} is ${code}`, async () => {
      const server = await rawServer([head], 5, false);
      assert.equal(await rejection(get(server.url)), code);
    });
  }

  it("a malformed chunk size is HPE_INVALID_CHUNK_SIZE", async () => {
    const server = await rawServer([ok("transfer-encoding: chunked\r\n"), "zz\r\nhello\r\n"], 5, false);
    assert.equal(await rejection(bodyOf(await get(server.url))), "HPE_INVALID_CHUNK_SIZE");
  });

  it("a header value with a line break is refused before any connection is made", async () => {
    const server = await rawServer([`${ok("content-length: 0\r\n")}`]);
    assert.equal(await rejection(get(server.url, { "x-evil": "a\r\nhost: elsewhere" })), "ERR_INVALID_CHAR");
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(server.sockets.length, 0);
  });

  it("parseHead and framingOf: the parts on their own", () => {
    const head = parseHead(
      "HTTP/1.0 206 Partial Content\r\nContent-Length: 10, 10\r\nX-A:  b \r\nx-b: 1\r\n  2",
    );
    assert.equal(head.status, 206);
    assert.equal(headerOf(head, "X-A"), "b");
    assert.equal(headerOf(head, "x-b"), "1 2", "obs-fold: the line goes on the value, with a space");
    assert.deepEqual(framingOf(head), { kind: "length", bytes: 10 });
    assert.deepEqual(framingOf(parseHead("HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked")), {
      kind: "chunked",
    });
    // A transfer coding under chunked, or Transfer-Encoding in HTTP/1.0: the framing is not trusted.
    assert.throws(() => framingOf(parseHead("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked")), {
      code: "HPE_INVALID_TRANSFER_ENCODING",
    });
    assert.throws(() => framingOf(parseHead("HTTP/1.0 200 OK\r\ntransfer-encoding: chunked")), {
      code: "HPE_INVALID_TRANSFER_ENCODING",
    });
    // A bare LF or a NUL in a value is refused, never read as a line end.
    assert.throws(() => parseHead("HTTP/1.1 200 OK\r\nx: a\ncontent-length: 9"), {
      code: "HPE_INVALID_HEADER_TOKEN",
    });
    assert.throws(() => parseHead("HTTP/1.1 200 OK\r\nx: a\0b"), { code: "HPE_INVALID_HEADER_TOKEN" });
  });

  it("of two Locations or ETags the first counts, as with node:http; other headers join", async () => {
    const server = await rawServer(
      [
        'HTTP/1.1 302 Found\r\nlocation: /a\r\nLocation: /b\r\netag: "1"\r\netag: "2"\r\nvia: x\r\nvia: y\r\ncontent-length: 0\r\n\r\n',
      ],
      5,
      false,
    );
    const reply = await get(server.url);
    assert.equal(reply.header("location"), "/a");
    assert.equal(reply.header("etag"), '"1"');
    assert.equal(reply.header("via"), "x, y");
  });

  it("bytes past the Content-Length are not the body's", async () => {
    const server = await rawServer([`${ok("content-length: 5\r\n")}helloEXTRA`], 5, false);
    assert.equal((await bodyOf(await get(server.url))).bytes.toString(), "hello");
  });
});

describe("socket transport: flow", () => {
  it("a reader that does not read stops the socket: the server's writes back up", async () => {
    const body = Buffer.alloc(64 * 1024 * 1024, 1);
    const server = await rawServer([ok(`content-length: ${body.length}\r\n`), body], 5, false);
    const reply = await get(server.url);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const socket = server.sockets[0];
    assert.ok(socket);
    // Read: at most a few MiB in the client (4 MiB queued) and the kernel's buffers; not 64 MiB.
    assert.ok(socket.writableLength > 32 * 1024 * 1024, `${socket.writableLength} bytes still to write`);
    let read = 0;
    for (let chunk = await reply.next(); chunk !== null; chunk = await reply.next()) read += chunk.length;
    assert.equal(read, body.length);
  });

  it("an abort mid-body rejects the read and closes the connection", async () => {
    const server = await rawServer([ok("content-length: 1000000\r\n"), "x".repeat(1000)], 5, false);
    const controller = new AbortController();
    const reply = await get(server.url, {}, controller.signal);
    assert.equal((await reply.next())?.length, 1000);
    controller.abort();
    await assert.rejects(reply.next(), { name: "AbortError" });
    const socket = server.sockets[0];
    const closed = new Promise<void>((resolve) =>
      socket?.closed ? resolve() : socket?.once("close", resolve),
    );
    const late = new Promise((_resolve, reject) =>
      setTimeout(() => reject(new Error("still open")), 2000).unref(),
    );
    await Promise.race([closed, late]);
  });

  it("a signal aborted before the request sends nothing", async () => {
    const server = await rawServer([`${ok("content-length: 0\r\n")}`]);
    const controller = new AbortController();
    controller.abort();
    await assert.rejects(get(server.url, {}, controller.signal), { name: "AbortError" });
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(server.requests.length, 0);
  });

  it("a coded answer cancelled unread (a redirect, a 503) is dropped without an error", async () => {
    const server = await rawServer(
      ["HTTP/1.1 503 Service Unavailable\r\ncontent-encoding: gzip\r\ncontent-length: 100\r\n\r\n"],
      5,
      false,
    );
    const reply = await get(server.url);
    assert.equal(reply.status, 503);
    reply.cancel();
    // An error nobody listens for would end the test process here.
    await new Promise((resolve) => setTimeout(resolve, 100));
  });

  it("a coded body cut short is an error of its read, not of the process", async () => {
    const gz = gzipSync(randomBytes(100_000));
    const server = await rawServer([
      ok(`content-encoding: gzip\r\ncontent-length: ${gz.length}\r\n`),
      gz.subarray(0, 5000),
    ]);
    await assert.rejects(bodyOf(await get(server.url)));
  });

  it("HEAD and https go to the fallback, untouched", async () => {
    const fallback = recordingFallback();
    const own = socketTransport({ connectTimeoutMs: 2000 }, fallback);
    const signal = new AbortController().signal;
    assert.equal(
      (await own.send({ method: "HEAD", url: "http://127.0.0.1:9/x", headers: {}, signal })).status,
      299,
    );
    assert.equal(
      (await own.send({ method: "GET", url: "https://127.0.0.1:9/x", headers: {}, signal })).status,
      299,
    );
    assert.deepEqual(
      fallback.sent.map((r) => `${r.method} ${r.url}`),
      ["HEAD http://127.0.0.1:9/x", "GET https://127.0.0.1:9/x"],
    );
  });

  it("a connection not up in time is UND_ERR_CONNECT_TIMEOUT, on both direct transports", async () => {
    // A port that never finishes a handshake: a listener (Python's, which accepts nothing) whose
    // queue of one is filled, so the kernel drops further SYNs.
    const hole = spawn("python3", [
      "-c",
      "import socket,sys,time\ns=socket.socket()\ns.bind(('127.0.0.1',0))\ns.listen(0)\nprint(s.getsockname()[1],flush=True)\ntime.sleep(60)",
    ]);
    try {
      const [line] = (await once(hole.stdout, "data")) as [Buffer];
      const port = Number(line.toString().trim());
      const fillers = [0, 1, 2].map(() => net.connect(port, "127.0.0.1").on("error", () => undefined));
      await new Promise((resolve) => setTimeout(resolve, 100));
      const url = `http://127.0.0.1:${port}/x`;
      // Without the connect timer the request would wait for the kernel's SYN retries: cut at 3 s.
      const signal = AbortSignal.timeout(3000);
      const limits = DEFAULT_TRANSFER_LIMITS;
      const direct = nodeTransport({ insecureTls: false, connectTimeoutMs: 300, limits });
      const own = socketTransport({ connectTimeoutMs: 300 }, direct);
      for (const method of ["GET", "HEAD"] as const) {
        const started = Date.now();
        await assert.rejects(own.send({ method, url, headers: {}, signal }), {
          code: "UND_ERR_CONNECT_TIMEOUT",
        });
        assert.ok(Date.now() - started < 2000, `${method}: gave up after ${Date.now() - started} ms`);
      }
      for (const filler of fillers) filler.destroy();
    } finally {
      hole.kill();
    }
  });

  it("a refused connection is ECONNREFUSED", async () => {
    const server = await rawServer([]);
    const url = server.url;
    await server.close();
    await assert.rejects(get(url), { code: "ECONNREFUSED" });
  });
});
