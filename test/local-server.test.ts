// The fake hosts' base (test/helpers/local-server.ts): what every other test relies on when it
// counts requests or closes a server that still has a request in flight.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { promises as fs } from "node:fs";
import http from "node:http";
import https from "node:https";
import path from "node:path";
import { describe, it } from "node:test";
import { tempDir } from "./helpers/fixtures.js";
import { startLocalServer } from "./helpers/local-server.js";

/** Rejects if `promise` takes longer than `ms`: a close() that hangs must fail, not stall the file. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took more than ${ms} ms`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

describe("local-server", () => {
  it("records each request (method, path, url with query, headers) before answering it", async () => {
    const local = await startLocalServer((_req, res, record) => {
      res.end(`${local.requests.indexOf(record)}`);
    });
    try {
      assert.match(local.origin, /^http:\/\/127\.0\.0\.1:\d+$/);
      const first = await fetch(local.url("/a/b?x=1&y=2"), { headers: { "x-test": "one" } });
      assert.equal(await first.text(), "0");
      const second = await fetch(local.url("/a/b"), { method: "POST", body: "z" });
      assert.equal(await second.text(), "1");
      assert.equal(local.requests.length, 2);
      assert.deepEqual(
        local.requests.map((r) => [r.method, r.path, r.url]),
        [
          ["GET", "/a/b", "/a/b?x=1&y=2"],
          ["POST", "/a/b", "/a/b"],
        ],
      );
      assert.equal(local.requests[0]?.headers["x-test"], "one");
      assert.equal(local.requestsTo("/a/b").length, 2);
      assert.equal(local.requestsTo("/a").length, 0);
    } finally {
      await local.close();
    }
  });

  it("close() ends a request that is never answered and an idle keep-alive connection", async () => {
    const local = await startLocalServer((req, res) => {
      if (req.url === "/quick") res.end("ok");
      // Any other request is held: no answer, ever.
    });
    const agent = new http.Agent({ keepAlive: true });
    const get = (pathname: string): Promise<string> =>
      new Promise((resolve, reject) => {
        http
          .get(local.url(pathname), { agent }, (res) => {
            res.setEncoding("utf8");
            let body = "";
            res.on("data", (chunk: string) => (body += chunk));
            res.on("end", () => resolve(body));
          })
          .on("error", reject);
      });
    try {
      assert.equal(await get("/quick"), "ok"); // leaves an idle keep-alive socket
      const held = get("/held");
      while (local.requestsTo("/held").length === 0) await new Promise((r) => setTimeout(r, 10));
      await within(local.close(), 5_000, "close() with a held request");
      await assert.rejects(held, /socket hang up|ECONNRESET/);
      await local.close(); // a second close is harmless
    } finally {
      agent.destroy();
    }
  });

  it("serves HTTPS with the given key and certificate", async (t) => {
    const dir = await tempDir("local-server-tls-");
    const key = path.join(dir, "key.pem");
    const cert = path.join(dir, "cert.pem");
    try {
      execFileSync(
        "openssl",
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1"].concat([
          "-subj",
          "/CN=127.0.0.1",
          "-addext",
          "subjectAltName=IP:127.0.0.1",
        ]),
        { stdio: "ignore" },
      );
    } catch (error) {
      await fs.rm(dir, { recursive: true, force: true });
      t.skip(`openssl could not make a certificate: ${String(error).split("\n")[0]}`);
      return;
    }
    const tls = { key: await fs.readFile(key, "utf8"), cert: await fs.readFile(cert, "utf8") };
    await fs.rm(dir, { recursive: true, force: true });
    const local = await startLocalServer((_req, res) => void res.end("secure"), { tls });
    try {
      assert.match(local.origin, /^https:\/\/127\.0\.0\.1:\d+$/);
      const body = await new Promise<string>((resolve, reject) => {
        https
          .get(local.url("/s"), { ca: tls.cert }, (res) => {
            res.setEncoding("utf8");
            let text = "";
            res.on("data", (chunk: string) => (text += chunk));
            res.on("end", () => resolve(text));
          })
          .on("error", reject);
      });
      assert.equal(body, "secure");
      assert.deepEqual(local.requestsTo("/s").length, 1);
    } finally {
      await within(local.close(), 5_000, "close() of the HTTPS server");
    }
  });
});
