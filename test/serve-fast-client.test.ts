/**
 * The files form between a `hubcache serve` mirror (a real child process in front of the stand-in
 * hub) and hubcache clients: the client fetches the model's files in parallel from the mirror's
 * list, ends with the same files and a record carrying the upstream archive's SHA-256 (which
 * `hubcache verify` checks by CRC-32), detects a byte changed in transit, resumes a cut file,
 * refuses an unsafe list, and gets a tar as before when the mirror's entry has no record (Python).
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { promises as fs } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { resolve, verifyEntries } from "../src/index.js";
import { readTree, rejectionOf, savedModelDir, tarGz, tempDir } from "./helpers/fixtures.js";
import { type HubServer, startHubServer } from "./helpers/hub-server.js";
import { type Mirror, mirrorLog, startMirror } from "./helpers/mirror.js";
import { TEST_TIMEOUT_MS, leftovers, runCli } from "./helpers/processes.js";
import { type RequestRecord, startPausingProxy } from "./helpers/pausing-proxy.js";
import { until } from "./helpers/wait.js";

const LIMIT = { timeout: TEST_TIMEOUT_MS };
const HANDLE = "https://tfhub.dev/google/fast/1";
const FILES_TYPE = "application/vnd.hubcache.files+json";
const sha1 = (text: string): string => createHash("sha1").update(text).digest("hex");
const sha256 = (bytes: Buffer): string => createHash("sha256").update(bytes).digest("hex");

let hub: HubServer;
let modelDir: string;
let archive: Buffer;

before(async () => {
  hub = await startHubServer();
  modelDir = await savedModelDir(3 << 20);
  // An empty folder and an empty file must arrive too.
  await fs.mkdir(path.join(modelDir, "assets", "empty"));
  await fs.writeFile(path.join(modelDir, "variables", "empty.bin"), "");
  await fs.writeFile(
    path.join(modelDir, "variables", "variables.data-00001-of-00002"),
    Buffer.alloc(5 << 20, 7),
  );
  archive = await tarGz(modelDir);
  hub.add("/google/fast/1", { archive, dir: modelDir });
});
after(() => hub.close());

async function warmMirror(): Promise<{ mirror: Mirror; cacheDir: string }> {
  const cacheDir = await tempDir("fast-mirror-");
  const mirror = await startMirror(["--cache-dir", cacheDir, "--upstream", `tfhub.dev=${hub.origin}`]);
  const warm = await fetch(`${mirror.origin}/tfhub.dev/google/fast/1?tf-hub-format=compressed`);
  assert.equal(warm.status, 200);
  await warm.arrayBuffer();
  return { mirror, cacheDir };
}

async function readRecord(cacheDir: string): Promise<Record<string, unknown>> {
  return JSON.parse(
    await fs.readFile(path.join(cacheDir, `${sha1(HANDLE)}.hubcache.json`), "utf8"),
  ) as Record<string, unknown>;
}

/** No entry, no record and no leftover (lock, temp dir) in the client's cache. */
async function assertNothingCached(cacheDir: string): Promise<void> {
  const names = await fs.readdir(cacheDir);
  assert.ok(!names.includes(sha1(HANDLE)), names.join());
  assert.ok(!names.some((name) => name.endsWith(".hubcache.json")), names.join());
  assert.deepEqual(await leftovers(cacheDir), []);
}

async function folders(root: string, prefix = ""): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await fs.readdir(root, { withFileTypes: true })) {
    if (!entry.isDirectory()) continue;
    const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
    found.push(rel, ...(await folders(path.join(root, entry.name), rel)));
  }
  return found.sort();
}

/**
 * A proxy in front of the mirror; `relay` sends each answer's body on, as is or tampered with.
 * `route` maps a request path to the mirror's (undefined: 404, never relayed).
 */
async function relayProxy(
  target: string,
  relay: (req: http.IncomingMessage, answer: http.IncomingMessage, res: http.ServerResponse) => void,
  route: (url: string, req: http.IncomingMessage) => string | undefined = (url) => url,
): Promise<{ origin: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const routed = route(req.url ?? "/", req);
    if (routed === undefined) {
      res.writeHead(404).end();
      return;
    }
    const upstream = http.request(
      `${target}${routed}`,
      { method: req.method, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        relay(req, answer, res);
        answer.on("end", () => res.end());
      },
    );
    upstream.on("error", () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise((done) => {
        server.closeAllConnections();
        server.close(() => done());
      }),
  };
}

/** A proxy in front of the mirror that changes one byte of each body of a /_files/ path it names. */
function corruptingProxy(
  target: string,
  damaged: string,
): Promise<{ origin: string; close(): Promise<void> }> {
  return relayProxy(target, (req, answer, res) => {
    let at = 0;
    answer.on("data", (chunk: Buffer) => {
      const copy = Buffer.from(chunk);
      if ((req.url ?? "").endsWith(damaged) && at <= 1000 && at + copy.length > 1000) {
        copy[1000 - at] = (copy[1000 - at] ?? 0) ^ 0x01;
      }
      at += copy.length;
      res.write(copy);
    });
  });
}

describe("the files form through a mirror", () => {
  test(
    "a client fetches the files in parallel; the record has the upstream SHA-256 and CRC-32s",
    LIMIT,
    async () => {
      const { mirror } = await warmMirror();
      try {
        const cacheDir = await tempDir("fast-client-");
        // A deadline well inside the test's own: a stall fails with the CLI's stderr (its retries).
        const run = await runCli(["resolve", "--cache-dir", cacheDir, HANDLE], {
          env: { HUBCACHE_MIRROR: mirror.origin, HUBCACHE_DEADLINE: "45" },
        });
        assert.equal(run.code, 0, run.stderr);
        const entry = path.join(cacheDir, sha1(HANDLE));
        assert.equal(run.stdout.trim(), entry);
        const got = await readTree(entry);
        const expected = await readTree(modelDir);
        assert.deepEqual([...got.keys()].sort(), [...expected.keys()].sort());
        for (const [name, bytes] of expected) assert.ok(got.get(name)?.equals(bytes), name);
        assert.deepEqual(await folders(entry), await folders(modelDir));
        const record = await readRecord(cacheDir);
        // The upstream archive's digest and size (as the mirror recorded them), not a re-packed tar's.
        assert.equal(record.archiveSha256, sha256(archive));
        assert.equal(record.archiveBytes, archive.length);
        const files = record.files as { path: string; size: number; crc32?: string }[];
        assert.ok(files.filter((f) => f.size > 0).every((f) => /^[0-9a-f]{8}$/.test(f.crc32 ?? "")));
        // The archive request got the list; every non-empty file came from /_files/. The mirror logs
        // a request when its answer closes, which may come after the client is done.
        const fileLines = (): string[] =>
          mirrorLog(mirror).filter((line) => line.startsWith(`GET /_files/${sha1(HANDLE)}/`));
        const nonEmpty = files.filter((f) => f.size > 0).length;
        await until(() => fileLines().length >= nonEmpty, "the mirror's log of the file requests");
        const log = mirrorLog(mirror);
        const fileRequests = fileLines();
        assert.equal(fileRequests.length, nonEmpty, log.join("\n"));
        assert.ok(
          fileRequests.every((line) => line.endsWith(" 200")),
          log.join("\n"),
        );
        const verified = await verifyEntries(undefined, { cacheDir });
        assert.equal(verified.entries[0]?.status, "ok");
        assert.equal(verified.entries[0]?.checked, "crc32");
      } finally {
        await mirror.stop();
      }
    },
  );

  test("the big files are asked for first, without waiting for the small ones", LIMIT, async () => {
    const { mirror } = await warmMirror();
    const proxy = await startPausingProxy(mirror.origin);
    const isFile = (r: RequestRecord): boolean => r.path.startsWith("/_files/");
    const fileOf = (r: RequestRecord): string =>
      decodeURIComponent(r.path.slice(r.path.indexOf("/", "/_files/".length) + 1));
    // Five small files (at most 4 KiB) and two big ones (5 MiB and 3 MiB). The first six file
    // requests are held, so no lane can finish and ask for its next file: the six that arrive are
    // exactly the first request of each lane, whatever order the machine sends them in. Fetched
    // smallest first on shared lanes, the big ones would not be among them.
    const wave = Array.from({ length: 6 }, (_, i) => proxy.holdWhen(isFile, i + 1));
    try {
      const cacheDir = await tempDir("fast-order-");
      const resolved = resolve(HANDLE, { cacheDir, mirror: proxy.endpoint });
      resolved.catch(() => undefined);
      await until(() => proxy.requests.filter(isFile).length >= 6, "the first request of every lane", 15_000);
      const first = proxy.requests.filter(isFile).map(fileOf);
      assert.ok(first.includes("variables/variables.data-00001-of-00002"), first.join(", "));
      assert.ok(first.includes("variables/variables.data-00000-of-00001"), first.join(", "));
      for (const hold of wave) hold.release();
      await resolved;
      const asked = proxy.requests.filter(isFile).map(fileOf);
      assert.equal(asked.length, 7, asked.join(", "));
      assert.equal(new Set(asked).size, 7, asked.join(", "));
    } finally {
      for (const hold of wave) hold.release();
      await proxy.close();
      await mirror.stop();
    }
  });

  test("a byte changed in transit is caught by the CRC-32; nothing is cached", LIMIT, async () => {
    const { mirror } = await warmMirror();
    const proxy = await corruptingProxy(mirror.origin, "variables.data-00000-of-00001");
    try {
      const cacheDir = await tempDir("fast-corrupt-");
      const failed = await rejectionOf(resolve(HANDLE, { cacheDir, mirror: proxy.origin, retries: 0 }));
      assert.equal(failed?.code, "ERR_HUBCACHE_CORRUPT", failed?.message);
      assert.match(failed?.message ?? "", /variables\.data-00000-of-00001.*CRC-32/);
      await assertNothingCached(cacheDir);
    } finally {
      await proxy.close();
      await mirror.stop();
    }
  });

  test(
    "an entry without a record (written by Python) is sent as a tar, and the client takes it",
    LIMIT,
    async () => {
      const { mirror, cacheDir: mirrorCache } = await warmMirror();
      try {
        // What Python tensorflow_hub leaves: the folder and its descriptor, no hubcache record.
        await fs.rm(path.join(mirrorCache, `${sha1(HANDLE)}.hubcache.json`));
        const answer = await fetch(`${mirror.origin}/tfhub.dev/google/fast/1?tf-hub-format=compressed`, {
          headers: { accept: FILES_TYPE },
        });
        assert.equal(answer.headers.get("content-type"), "application/x-tar");
        await answer.arrayBuffer();
        const cacheDir = await tempDir("fast-fallback-");
        await resolve(HANDLE, { cacheDir, mirror: mirror.origin });
        const got = await readTree(path.join(cacheDir, sha1(HANDLE)));
        assert.deepEqual([...got.keys()].sort(), [...(await readTree(modelDir)).keys()].sort());
        assert.ok(!mirrorLog(mirror).some((line) => line.includes("/_files/")));
        // What the client received is the mirror's tar: its record says so (not the upstream digest).
        const record = await readRecord(cacheDir);
        assert.notEqual(record.archiveSha256, sha256(archive));
      } finally {
        await mirror.stop();
      }
    },
  );
});

describe("a listed file the mirror no longer has", () => {
  test("is a coded error that says so, not a misspelt handle; nothing is cached", LIMIT, async () => {
    const { mirror } = await warmMirror();
    const proxy = await relayProxy(
      mirror.origin,
      (_req, answer, res) => answer.pipe(res),
      (url) => (url.includes("/_files/") && url.endsWith("/saved_model.pb") ? undefined : url),
    );
    try {
      const cacheDir = await tempDir("fast-gone-");
      const failed = await rejectionOf(resolve(HANDLE, { cacheDir, mirror: proxy.origin, retries: 0 }));
      assert.equal(failed?.code, "ERR_HUBCACHE_UNEXPECTED_RESPONSE", failed?.message);
      assert.match(failed?.message ?? "", /listed saved_model\.pb .* no longer has it \(HTTP 404\)/);
      assert.match(failed?.hint ?? "", /try again/);
      await assertNothingCached(cacheDir);
    } finally {
      await proxy.close();
      await mirror.stop();
    }
  });
});

describe("a mirror behind a reverse proxy at a path prefix", () => {
  test(
    "the files come through the prefix too (HUBCACHE_MIRROR=http://proxy/team-mirror)",
    LIMIT,
    async () => {
      const { mirror } = await warmMirror();
      const seen: string[] = [];
      const proxy = await relayProxy(
        mirror.origin,
        (_req, answer, res) => answer.pipe(res),
        (url) => {
          seen.push(url);
          return url.startsWith("/team-mirror/") ? url.slice("/team-mirror".length) : undefined;
        },
      );
      try {
        const cacheDir = await tempDir("fast-prefix-");
        const entry = await resolve(HANDLE, { cacheDir, mirror: `${proxy.origin}/team-mirror/`, retries: 0 });
        const got = await readTree(entry);
        const expected = await readTree(modelDir);
        assert.deepEqual([...got.keys()].sort(), [...expected.keys()].sort());
        for (const [name, bytes] of expected) assert.ok(got.get(name)?.equals(bytes), name);
        const files = seen.filter((url) => url.startsWith(`/team-mirror/_files/${sha1(HANDLE)}/`));
        assert.ok(files.length > 0, seen.join("\n"));
        assert.ok(
          seen.every((url) => url.startsWith("/team-mirror/")),
          `every request went through the prefix:\n${seen.join("\n")}`,
        );
      } finally {
        await proxy.close();
        await mirror.stop();
      }
    },
  );
});

/**
 * A proxy in front of the mirror that cuts the first body of `cut` after `after` bytes; with
 * `goneOnResume`, it answers 404 to the ranged request that resumes it.
 */
async function cuttingProxy(
  target: string,
  cut: string,
  after: number,
  goneOnResume = false,
): Promise<{ origin: string; ranges: string[]; close(): Promise<void> }> {
  const ranges: string[] = [];
  let cutDone = false;
  const route = (url: string, req: http.IncomingMessage): string | undefined =>
    goneOnResume && url.endsWith(cut) && req.headers.range ? undefined : url;
  const proxy = await relayProxy(
    target,
    (req, answer, res) => {
      const url = req.url ?? "/";
      if (url.endsWith(cut) && req.headers.range) ranges.push(req.headers.range);
      const cutThis = url.endsWith(cut) && !cutDone;
      let sent = 0;
      answer.on("data", (chunk: Buffer) => {
        if (cutThis && sent + chunk.length > after) {
          cutDone = true;
          answer.destroy();
          // Cut once every byte up to `after` has left this process (writes finish in order).
          res.write(chunk.subarray(0, after - sent), () => res.destroy());
          return;
        }
        sent += chunk.length;
        res.write(chunk);
      });
    },
    route,
  );
  return { ...proxy, ranges };
}

describe("the limits of the files form", () => {
  test("maxExtractBytes and the disk guard refuse the list before any file is fetched", LIMIT, async () => {
    const { mirror } = await warmMirror();
    try {
      const disk = await fs.statfs(await tempDir());
      const free = disk.bavail * disk.bsize;
      for (const [options, code] of [
        [{ maxExtractBytes: 1 << 20 }, "ERR_HUBCACHE_TOO_LARGE"],
        // Leaves about 1 MB to write, and the model has 8 MB.
        [{ minFreeBytes: free - (1 << 20) }, "ERR_HUBCACHE_DISK_FULL"],
      ] as const) {
        const cacheDir = await tempDir("fast-limits-");
        const before = mirrorLog(mirror).length;
        const failed = await rejectionOf(resolve(HANDLE, { cacheDir, mirror: mirror.origin, ...options }));
        assert.equal(failed?.code, code);
        const asked = (): string[] => mirrorLog(mirror).slice(before);
        await until(
          () => asked().some((line) => line.includes("tf-hub-format=compressed")),
          "the mirror's log of the archive request",
        );
        const after = asked();
        assert.ok(!after.some((line) => line.includes("/_files/")), after.join("\n"));
        assert.ok(
          after.some((line) => line.includes("tf-hub-format=compressed")),
          after.join("\n"),
        );
        await assertNothingCached(cacheDir);
      }
    } finally {
      await mirror.stop();
    }
  });
});

describe("a file cut on the way", () => {
  test("is resumed with a Range and ends whole", LIMIT, async () => {
    const { mirror } = await warmMirror();
    const proxy = await cuttingProxy(mirror.origin, "variables.data-00001-of-00002", 1 << 20);
    try {
      const cacheDir = await tempDir("fast-resume-");
      const location = await resolve(HANDLE, { cacheDir, mirror: proxy.origin, retryDelayMs: 10 });
      const got = await readTree(location);
      const expected = await readTree(modelDir);
      for (const [name, bytes] of expected) assert.ok(got.get(name)?.equals(bytes), name);
      assert.deepEqual(proxy.ranges, [`bytes=${1 << 20}-`]);
      const verified = await verifyEntries(undefined, { cacheDir });
      assert.equal(verified.entries[0]?.status, "ok");
    } finally {
      await proxy.close();
      await mirror.stop();
    }
  });

  test("whose resume finds it gone (404) says the mirror no longer has it", LIMIT, async () => {
    const { mirror } = await warmMirror();
    const proxy = await cuttingProxy(mirror.origin, "variables.data-00001-of-00002", 1 << 20, true);
    try {
      const cacheDir = await tempDir("fast-resume-gone-");
      const failed = await rejectionOf(resolve(HANDLE, { cacheDir, mirror: proxy.origin, retryDelayMs: 10 }));
      assert.equal(failed?.code, "ERR_HUBCACHE_UNEXPECTED_RESPONSE", failed?.message);
      assert.match(failed?.message ?? "", /variables\.data-00001-of-00002 .* no longer has it \(HTTP 404\)/);
      assert.equal(proxy.ranges.length, 0, "the ranged request never reached the relay");
      await assertNothingCached(cacheDir);
    } finally {
      await proxy.close();
      await mirror.stop();
    }
  });
});

describe("a list of files the client refuses", () => {
  /** A stand-in mirror that answers the archive request with `list` and serves nothing else. */
  async function fakeMirror(
    list: unknown,
  ): Promise<{ origin: string; hits: string[]; close(): Promise<void> }> {
    const hits: string[] = [];
    const server = http.createServer((req, res) => {
      hits.push(req.url ?? "");
      if ((req.url ?? "").includes("tf-hub-format=compressed")) {
        res.writeHead(200, { "content-type": FILES_TYPE }).end(JSON.stringify(list));
      } else res.writeHead(404).end();
    });
    await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
    const { port } = server.address() as AddressInfo;
    return {
      origin: `http://127.0.0.1:${port}`,
      hits,
      close: () => new Promise((d) => server.close(() => d())),
    };
  }
  const filesBase = `/_files/${"0".repeat(40)}`;
  const base = { hubcacheFiles: 1, archiveSha256: "a".repeat(64), archiveBytes: 10, filesBase };
  const oneFile = { dirs: [], files: [{ path: "f", size: 1, crc32: "00000000" }] };

  for (const [what, list, code] of [
    [
      "a path with ..",
      { ...base, dirs: [], files: [{ path: "../evil", size: 1, crc32: "00000000" }] },
      "ERR_HUBCACHE_UNSAFE_ARCHIVE",
    ],
    [
      "an absolute path",
      { ...base, dirs: [], files: [{ path: "/etc/x", size: 1, crc32: "00000000" }] },
      "ERR_HUBCACHE_UNSAFE_ARCHIVE",
    ],
    [
      "a file used as a folder",
      { ...base, dirs: ["a/b"], files: [{ path: "a", size: 1, crc32: "00000000" }] },
      "ERR_HUBCACHE_UNSAFE_ARCHIVE",
    ],
    [
      "more files than maxFiles",
      {
        ...base,
        dirs: [],
        files: Array.from({ length: 3 }, (_, i) => ({ path: `f${i}`, size: 1, crc32: "00000000" })),
      },
      "ERR_HUBCACHE_TOO_LARGE",
    ],
    ["no CRC-32", { ...base, dirs: [], files: [{ path: "f", size: 1 }] }, "ERR_HUBCACHE_UNEXPECTED_RESPONSE"],
    // The files must come from the mirror itself: URL parsing drops a tab, so "/\t/host" is another host.
    ...(["//evil.example/_files", "/\t/evil.example/_files", `/\t/127.0.0.2${filesBase}`, "/_files/x"].map(
      (other) => [
        `files base ${JSON.stringify(other)}`,
        { ...base, ...oneFile, filesBase: other },
        "ERR_HUBCACHE_UNEXPECTED_RESPONSE",
      ],
    ) as [string, unknown, string][]),
  ] as const) {
    test(`${what}: refused before any file is fetched`, LIMIT, async () => {
      const fake = await fakeMirror(list);
      try {
        const cacheDir = await tempDir("fast-refuse-");
        const failed = await rejectionOf(
          resolve(HANDLE, { cacheDir, mirror: fake.origin, maxFiles: 2, retries: 0 }),
        );
        assert.equal(failed?.code, code);
        assert.deepEqual(
          fake.hits.filter((url) => !url.includes("tf-hub-format")),
          [],
        );
        await assertNothingCached(cacheDir);
      } finally {
        await fake.close();
      }
    });
  }
});
