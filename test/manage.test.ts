// Cache management (issue 11) in one process: ls, rm, prune, verify and dir over a cache holding
// hubcache entries and a Python-style entry (folder + descriptor, no record), through the library
// and through the CLI's formatting; last-use tracking (LRU order), integrity records, units.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { promises as fs } from "node:fs";
import path from "node:path";
import { after, before, beforeEach, describe, test } from "node:test";
import { descriptorText, entryPaths, handleHash } from "../src/cache/layout.js";
import { main } from "../src/cli/main.js";
import {
  cacheDirInfo,
  formatSize,
  listEntries,
  parseDuration,
  parseSize,
  pruneCache,
  removeEntries,
  verifyEntries,
} from "../src/manage/index.js";
import { resolve } from "../src/resolve.js";
import { expectCode } from "./helpers/assertions.js";
import { savedModelDir, tarGz, tempDir } from "./helpers/fixtures.js";
import { type HubServer, startHubServer } from "./helpers/hub-server.js";

let hub: HubServer;
const archives = new Map<string, Buffer>();
const MODELS = { a: "/team/a/1", b: "/team/b/1", c: "/team/c/1" } as const;
let cacheDir: string;
let python: string; // a Python-style entry's handle

before(async () => {
  hub = await startHubServer();
  for (const [name, modelPath] of Object.entries(MODELS)) {
    const archive = await tarGz(await savedModelDir((name === "c" ? 96 : 32) * 1024));
    archives.set(name, archive);
    hub.add(modelPath, { archive });
  }
});
after(() => hub.close());

function handle(name: keyof typeof MODELS): string {
  return hub.handle(MODELS[name]);
}

/** What TF Hub leaves: the model folder and its descriptor, no hubcache record. */
async function addPythonEntry(dir: string, modelHandle: string): Promise<string> {
  const paths = entryPaths(dir, modelHandle);
  await savedModelDir(8 * 1024, await fs.mkdir(paths.dir, { recursive: true }).then(() => paths.dir));
  await fs.writeFile(paths.descriptor, descriptorText(modelHandle));
  return paths.dir;
}

/** Set an entry's last use (its folder's and descriptor's times) to `ago` ms in the past. */
async function usedAgo(dir: string, ago: number): Promise<void> {
  const when = new Date(Date.now() - ago);
  await fs.utimes(dir, when, when);
  await fs.utimes(`${dir}.descriptor.txt`, when, when).catch(() => undefined);
}

async function cli(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const code = await main(args, {
    out: { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) },
    env: { PATH: process.env.PATH, ...env },
    stderrIsTTY: false,
  });
  return { code, stdout, stderr };
}

async function treeBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await fs.readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += (await fs.stat(path.join(entry.parentPath, entry.name))).size;
  }
  return total;
}

beforeEach(async () => {
  cacheDir = await tempDir("hubcache-manage-");
  await resolve(handle("a"), { cacheDir });
  await resolve(handle("b"), { cacheDir });
  python = "https://tfhub.dev/google/python-written/1";
  await addPythonEntry(cacheDir, python);
});

describe("units", () => {
  test("sizes: decimal and binary units, bytes, any case; junk is undefined", () => {
    assert.equal(parseSize("10GB"), 10e9);
    assert.equal(parseSize("500MiB"), 500 * 2 ** 20);
    assert.equal(parseSize("1.5 gib"), 1.5 * 2 ** 30);
    assert.equal(parseSize("1234"), 1234);
    assert.equal(parseSize("2k"), 2000);
    for (const junk of ["", "GB", "-1GB", "10 XB", "1e9", "10GB5"]) {
      assert.equal(parseSize(junk), undefined, junk);
    }
    assert.equal(formatSize(1536), "1.5 KiB");
  });

  test("durations: 30d, 12h, 90m, 45s, 2w, 1d12h; junk is undefined", () => {
    assert.equal(parseDuration("30d"), 30 * 86_400_000);
    assert.equal(parseDuration("12h"), 12 * 3_600_000);
    assert.equal(parseDuration("90m"), 90 * 60_000);
    assert.equal(parseDuration("45s"), 45_000);
    assert.equal(parseDuration("2w"), 14 * 86_400_000);
    assert.equal(parseDuration("1d12h"), 36 * 3_600_000);
    for (const junk of ["", "d", "12", "3y", "-1d", "1d x"]) {
      assert.equal(parseDuration(junk), undefined, junk);
    }
  });
});

describe("ls", () => {
  test("every entry with its handle, bytes, files, times, writer and state; the archive's SHA-256", async () => {
    const listing = await listEntries({ cacheDir, sort: "name" });
    assert.equal(listing.cacheDir, cacheDir);
    assert.deepEqual(
      listing.entries.map((e) => [e.handle, e.writer, e.state]),
      [
        [handle("a"), "hubcache", "ok"],
        [handle("b"), "hubcache", "ok"],
        [python, "tensorflow_hub", "ok"],
      ],
    );
    for (const entry of listing.entries) {
      assert.equal(entry.path, path.join(cacheDir, entry.hash));
      assert.equal(entry.bytes, await treeBytes(entry.path), `${entry.handle}: bytes are the files' sizes`);
      assert.ok(entry.files !== null && entry.files > 0);
      assert.ok(entry.createdAt !== null && entry.lastUsedAt !== null);
    }
    const a = listing.entries[0];
    assert.equal(
      a?.archiveSha256,
      createHash("sha256")
        .update(archives.get("a") as Buffer)
        .digest("hex"),
    );
    assert.equal(listing.entries[2]?.archiveSha256, null, "Python wrote no record");
    assert.equal(
      listing.totalBytes,
      listing.entries.reduce((s, e) => s + (e.bytes ?? 0), 0),
    );
  });

  test("CLI: --json prints the same data; text has one row per entry, the total and the dir", async () => {
    const json = await cli(["ls", "--json", "--cache-dir", cacheDir]);
    assert.equal(json.code, 0, json.stderr);
    const parsed = JSON.parse(json.stdout) as {
      cacheDir: string;
      totalBytes: number;
      entries: { hash: string }[];
    };
    assert.deepEqual(parsed, JSON.parse(JSON.stringify(await listEntries({ cacheDir }))));
    const text = await cli(["ls", "--cache-dir", cacheDir]);
    assert.equal(text.code, 0);
    const lines = text.stdout.trimEnd().split("\n");
    assert.match(lines[0] ?? "", /^HANDLE\s+SIZE\s+FILES\s+LAST USED\s+CREATED\s+WRITER\s+STATE$/);
    assert.equal(lines.length, 5);
    assert.match(lines[3] ?? "", /python-written.*just now.*tensorflow_hub\s+ok$/);
    assert.match(lines[4] ?? "", new RegExp(`^3 entries, [\\d.]+ KiB in ${cacheDir}$`));
  });

  test("a handle with credentials is listed redacted", async () => {
    const url = new URL(handle("a"));
    url.password = "hunter2";
    url.username = "me";
    await resolve(url.toString(), { cacheDir });
    const listing = await listEntries({ cacheDir });
    assert.ok(listing.entries.every((e) => !(e.handle ?? "").includes("hunter2")));
  });

  test("an entry being downloaded and an incomplete one have their states", async () => {
    const downloading = entryPaths(cacheDir, handle("c"));
    await fs.writeFile(downloading.lock, `elsewhere.example.4242.${"a".repeat(32)}`);
    const a = entryPaths(cacheDir, handle("a"));
    await fs.rm(path.join(a.dir, "saved_model.pb"));
    const states = new Map((await listEntries({ cacheDir })).entries.map((e) => [e.hash, e.state]));
    assert.equal(states.get(downloading.hash), "downloading");
    assert.equal(states.get(a.hash), "incomplete");
  });
});

describe("last use (LRU order)", () => {
  test("a hit older than the touch interval moves the entry to the back; within it, nothing is written", async () => {
    const a = entryPaths(cacheDir, handle("a")).dir;
    const b = entryPaths(cacheDir, handle("b")).dir;
    await usedAgo(a, 3 * 3_600_000);
    await usedAgo(b, 2 * 3_600_000);
    const order = async (): Promise<(string | null)[]> =>
      (await listEntries({ cacheDir, sort: "used" })).entries.map((e) => e.handle);
    assert.deepEqual(await order(), [handle("a"), handle("b"), python]);
    // Within the interval (4 h here): a hit records nothing.
    const before = (await fs.stat(a)).mtimeMs;
    await resolve(handle("a"), { cacheDir, touchIntervalMs: 4 * 3_600_000 });
    assert.equal((await fs.stat(a)).mtimeMs, before, "no write within the interval");
    // Past it (HUBCACHE_TOUCH_INTERVAL=1 s): recorded, and a moves to the back.
    await resolve(handle("a"), { cacheDir, env: { HUBCACHE_TOUCH_INTERVAL: "1" } });
    assert.deepEqual(await order(), [handle("b"), python, handle("a")]);
    // Python's entry too (its folder's time).
    await usedAgo(entryPaths(cacheDir, python).dir, 5 * 3_600_000);
    assert.deepEqual((await order())[0], python);
  });

  test("the default interval is an hour: a fresh entry's hit writes nothing", async () => {
    const a = entryPaths(cacheDir, handle("a")).dir;
    await usedAgo(a, 30 * 60_000);
    const before = (await fs.stat(a)).mtimeMs;
    await resolve(handle("a"), { cacheDir, env: {} });
    assert.equal((await fs.stat(a)).mtimeMs, before);
  });
});

describe("rm", () => {
  test("by handle and by hash: folder, descriptor and record go; --dry-run removes nothing", async () => {
    const a = entryPaths(cacheDir, handle("a"));
    const dry = await removeEntries([handle("a")], { cacheDir, dryRun: true });
    assert.deepEqual(
      dry.results.map((r) => r.status),
      ["would-remove"],
    );
    assert.ok(dry.freedBytes > 0);
    assert.ok((await fs.stat(a.dir)).isDirectory(), "dry run removed nothing");
    const pythonHash = handleHash(python);
    const done = await removeEntries([handle("a"), pythonHash], { cacheDir });
    assert.deepEqual(
      done.results.map((r) => r.status),
      ["removed", "removed"],
    );
    const names = await fs.readdir(cacheDir);
    assert.ok(!names.some((n) => n.startsWith(a.hash) || n.startsWith(pythonHash)), names.join(" "));
    assert.deepEqual(
      (await listEntries({ cacheDir })).entries.map((e) => e.handle),
      [handle("b")],
    );
    // The next resolve downloads it again.
    const downloads = hub.downloads().length;
    await resolve(handle("a"), { cacheDir });
    assert.equal(hub.downloads().length, downloads + 1);
  });

  test("an entry whose lock a live process holds is refused with ERR_HUBCACHE_IN_USE naming it, unless --force", async () => {
    const a = entryPaths(cacheDir, handle("a"));
    const holder = `elsewhere.example.4242.${"b".repeat(32)}`;
    await fs.writeFile(a.lock, holder);
    const refused = await removeEntries([handle("a")], { cacheDir });
    assert.equal(refused.results[0]?.status, "in-use");
    assert.equal(refused.results[0]?.error?.code, "ERR_HUBCACHE_IN_USE");
    assert.match(refused.results[0]?.error?.message ?? "", new RegExp(holder));
    assert.ok((await fs.stat(a.dir)).isDirectory());
    const text = await cli(["rm", "--cache-dir", cacheDir, handle("a")]);
    assert.equal(text.code, 1);
    assert.match(text.stderr, /^error\[ERR_HUBCACHE_IN_USE\]: .*elsewhere\.example\.4242/);
    const forced = await cli(["rm", "--force", "--cache-dir", cacheDir, handle("a")]);
    assert.equal(forced.code, 0, forced.stderr);
    await assert.rejects(fs.stat(a.dir));
    assert.equal(await fs.readFile(a.lock, "utf8"), holder, "the holder's lock is its own");
  });

  test("a lock whose holder is dead does not protect the entry", async () => {
    const a = entryPaths(cacheDir, handle("a"));
    const old = new Date(Date.now() - 10_000);
    await fs.writeFile(a.lock, `${(await import("node:os")).hostname()}.999999.${"c".repeat(32)}`);
    await fs.utimes(a.lock, old, old);
    const done = await removeEntries([handle("a")], { cacheDir });
    assert.equal(done.results[0]?.status, "removed");
    await assert.rejects(fs.stat(a.lock));
  });

  test("a target that is not cached is ERR_HUBCACHE_NOT_FOUND", async () => {
    const result = await removeEntries(["https://example.com/not/cached"], { cacheDir });
    assert.equal(result.results[0]?.error?.code, "ERR_HUBCACHE_NOT_FOUND");
    const text = await cli(["rm", "--cache-dir", cacheDir, "0".repeat(40)]);
    assert.equal(text.code, 1);
    assert.match(text.stderr, /ERR_HUBCACHE_NOT_FOUND/);
  });
});

describe("prune", () => {
  test("--unused-for removes entries not used for that long, Python's included", async () => {
    await usedAgo(entryPaths(cacheDir, handle("a")).dir, 40 * 86_400_000);
    await usedAgo(entryPaths(cacheDir, python).dir, 31 * 86_400_000);
    const result = await pruneCache({ cacheDir, unusedForMs: parseDuration("30d") });
    assert.deepEqual(
      result.removed.map((p) => [p.entry.handle, p.reason]).sort(),
      [
        [handle("a"), "unused"],
        [python, "unused"],
      ].sort(),
    );
    assert.deepEqual(
      (await listEntries({ cacheDir })).entries.map((e) => e.handle),
      [handle("b")],
    );
  });

  test("--max-size removes least recently used entries until the cache fits; --dry-run only lists", async () => {
    await resolve(handle("c"), { cacheDir });
    await usedAgo(entryPaths(cacheDir, handle("b")).dir, 3_600_000);
    await usedAgo(entryPaths(cacheDir, python).dir, 2 * 3_600_000);
    const listing = await listEntries({ cacheDir });
    const size = (h: string): number => listing.entries.find((e) => e.handle === h)?.bytes ?? 0;
    const cap = listing.totalBytes - size(python) - 1; // python (oldest) and then b must go
    const dry = await pruneCache({ cacheDir, maxBytes: cap, dryRun: true });
    assert.deepEqual(
      dry.removed.map((p) => p.entry.handle),
      [python, handle("b")],
    );
    assert.equal((await listEntries({ cacheDir })).entries.length, 4, "dry run removed nothing");
    const text = await cli(["prune", "--dry-run", "--max-size", String(cap), "--cache-dir", cacheDir]);
    assert.match(text.stdout, /would remove .*python-written.*over-size/);
    const result = await pruneCache({ cacheDir, maxBytes: cap });
    assert.deepEqual(
      result.removed.map((p) => p.entry.handle),
      [python, handle("b")],
    );
    assert.ok(result.totalBytesAfter <= cap);
    const left = await listEntries({ cacheDir });
    assert.deepEqual(left.entries.map((e) => e.handle).sort(), [handle("a"), handle("c")].sort());
    assert.equal(left.totalBytes, result.totalBytesAfter);
  });

  test("removes incomplete entries and dead leftovers; never an entry being downloaded", async () => {
    const a = entryPaths(cacheDir, handle("a"));
    await fs.rm(path.join(a.dir, "saved_model.pb")); // incomplete now
    const c = entryPaths(cacheDir, handle("c")); // a live download on another machine
    const uid = "d".repeat(32);
    await fs.writeFile(c.lock, `elsewhere.example.4242.${uid}`);
    await fs.mkdir(c.tmpDir(uid));
    await fs.writeFile(path.join(c.tmpDir(uid), "part"), "bytes");
    const trash = `${entryPaths(cacheDir, "gone").dir}.${"e".repeat(32)}.trash`;
    await fs.mkdir(trash);
    const result = await pruneCache({ cacheDir, maxBytes: 0 });
    assert.ok(result.removed.some((p) => p.entry.hash === a.hash && p.reason === "incomplete"));
    assert.ok(result.debris.includes(trash));
    assert.ok(!result.removed.some((p) => p.entry.hash === c.hash));
    assert.ok(
      (await fs.stat(path.join(c.tmpDir(uid), "part"))).isFile(),
      "the download's temp dir is untouched",
    );
    assert.equal(await fs.readFile(c.lock, "utf8"), `elsewhere.example.4242.${uid}`);
    assert.deepEqual(
      (await listEntries({ cacheDir })).entries.map((e) => e.state),
      ["downloading"],
    );
  });

  test("an entry whose lock is held is kept (skipped), and a held prune lock skips the whole prune", async () => {
    const b = entryPaths(cacheDir, handle("b"));
    await fs.writeFile(b.lock, `elsewhere.example.4242.${"f".repeat(32)}`);
    const result = await pruneCache({ cacheDir, maxBytes: 0 });
    assert.deepEqual(
      result.skipped.map((p) => p.entry.handle),
      [handle("b")],
    );
    assert.ok((await fs.stat(b.dir)).isDirectory());
    await fs.writeFile(
      path.join(cacheDir, "hubcache-prune.lock"),
      `elsewhere.example.4242.${"0".repeat(32)}`,
    );
    const busy = await pruneCache({ cacheDir, maxBytes: 0 });
    assert.equal(busy.ran, false);
    assert.match(busy.busyWith ?? "", /elsewhere\.example/);
    assert.ok((await fs.stat(b.dir)).isDirectory());
  });

  test("HUBCACHE_MAX_SIZE: after a download the cache is pruned to the cap, never the entry just downloaded", async () => {
    await usedAgo(entryPaths(cacheDir, handle("a")).dir, 3_600_000);
    const before = await listEntries({ cacheDir });
    const elsewhere = await tempDir();
    await resolve(handle("c"), { cacheDir: elsewhere });
    const cBytes = (await listEntries({ cacheDir: elsewhere })).totalBytes;
    const aBytes = before.entries.find((e) => e.handle === handle("a"))?.bytes ?? 0;
    const cap = before.totalBytes + cBytes - aBytes; // c fits once a (the least recently used) goes
    await resolve(handle("c"), { cacheDir, env: { HUBCACHE_MAX_SIZE: String(cap) } });
    const after = await listEntries({ cacheDir });
    assert.ok(after.totalBytes <= cap, `${after.totalBytes} > ${cap}`);
    const handles = after.entries.map((e) => e.handle);
    assert.ok(handles.includes(handle("c")), "the new entry stays");
    assert.ok(!handles.includes(handle("a")), "the least recently used went first");
    // A cap smaller than the new entry alone: everything else goes, the new one stays.
    await resolve(handle("a"), { cacheDir, maxCacheBytes: 1 });
    assert.deepEqual(
      (await listEntries({ cacheDir })).entries.map((e) => e.handle),
      [handle("a")],
    );
  });

  test("HUBCACHE_MAX_SIZE must be a size", async () => {
    await expectCode(
      resolve(handle("c"), { cacheDir, env: { HUBCACHE_MAX_SIZE: "lots" } }),
      "ERR_HUBCACHE_INVALID_CONFIG",
    );
  });
});

describe("verify", () => {
  test("hubcache entries are checked byte by byte; Python's are not verifiable", async () => {
    const result = await verifyEntries(undefined, { cacheDir });
    assert.equal(result.damaged, 0);
    const byHandle = new Map(result.entries.map((v) => [v.entry.handle, v]));
    assert.equal(byHandle.get(handle("a"))?.status, "ok");
    assert.equal(byHandle.get(handle("a"))?.checked, "crc32");
    assert.equal(byHandle.get(python)?.status, "not-verifiable");
    const text = await cli(["verify", "--cache-dir", cacheDir]);
    assert.equal(text.code, 0, text.stdout + text.stderr);
    assert.match(text.stdout, /not verifiable .*python-written/);
  });

  test("a changed byte (same size) is found: exit 1, naming the handle and the file; --fix downloads it again", async () => {
    const a = entryPaths(cacheDir, handle("a"));
    const file = path.join(a.dir, "variables", "variables.index");
    const bytes = await fs.readFile(file);
    bytes[100] = (bytes[100] ?? 0) ^ 0xff;
    await fs.writeFile(file, bytes);
    assert.equal((await listEntries({ cacheDir })).entries[0]?.state, "ok", "sizes alone do not see it");
    const text = await cli(["verify", "--cache-dir", cacheDir]);
    assert.equal(text.code, 1);
    assert.match(
      text.stdout,
      new RegExp(
        `DAMAGED ${handle("a")}\\n  variables/variables.index: CRC-32 [0-9a-f]{8}, expected [0-9a-f]{8}`,
      ),
    );
    const downloads = hub.downloads().length;
    const fixed = await verifyEntries([handle("a")], { cacheDir, fix: true });
    assert.equal(fixed.entries[0]?.fixed, true, fixed.entries[0]?.fixError?.message);
    assert.equal(fixed.damaged, 0);
    assert.equal(hub.downloads().length, downloads + 1);
    assert.equal((await verifyEntries([handle("a")], { cacheDir })).entries[0]?.status, "ok");
  });

  test("a record without digests (older hubcache) is checked by size, and says so", async () => {
    const a = entryPaths(cacheDir, handle("a"));
    const record = JSON.parse(await fs.readFile(a.record, "utf8")) as { files: { crc32?: string }[] };
    for (const file of record.files) delete file.crc32;
    await fs.writeFile(a.record, JSON.stringify(record));
    const result = await verifyEntries([handle("a")], { cacheDir });
    assert.equal(result.entries[0]?.status, "ok");
    assert.equal(result.entries[0]?.checked, "size");
    const text = await cli(["verify", "--cache-dir", cacheDir, handle("a")]);
    assert.match(text.stdout, /sizes only/);
    await fs.truncate(path.join(a.dir, "saved_model.pb"), 10);
    const damaged = await verifyEntries([handle("a")], { cacheDir });
    assert.equal(damaged.entries[0]?.status, "damaged");
    assert.deepEqual(
      damaged.entries[0]?.problems.map((p) => [p.file, p.problem]),
      [["saved_model.pb", "size"]],
    );
  });
});

describe("dir", () => {
  test("the cache dir a resolve would use, and which setting chose it", async () => {
    const env = { TMPDIR: "/var/tmp/x" };
    assert.deepEqual(
      [cacheDirInfo({ env, flags: {} }).cacheDir, cacheDirInfo({ env, flags: {} }).source],
      ["/var/tmp/x/tfhub_modules", "default"],
    );
    assert.equal(
      cacheDirInfo({ env: { TFHUB_CACHE_DIR: "/c" }, flags: { tfhub_cache_dir: "/f" } }).source,
      "TFHUB_CACHE_DIR",
    );
    assert.equal(cacheDirInfo({ env: {}, flags: { tfhub_cache_dir: "/f" } }).cacheDir, "/f");
    assert.equal(cacheDirInfo({ env: {}, flags: { tfhub_cache_dir: "/f" } }).source, "--tfhub_cache_dir");
    assert.equal(cacheDirInfo({ cacheDir: "/o", env: { TFHUB_CACHE_DIR: "/c" } }).source, "option");
    const text = await cli(["dir"], { TFHUB_CACHE_DIR: cacheDir });
    assert.equal(text.stdout, `${cacheDir}\nchosen by the TFHUB_CACHE_DIR environment variable\n`);
    const json = await cli(["dir", "--json", "--cache-dir", "s3://bucket/prefix"]);
    assert.deepEqual(JSON.parse(json.stdout), {
      cacheDir: "s3://bucket/prefix",
      source: "option",
      why: "the cacheDir option (--cache-dir)",
      sharedCache: null,
    });
  });
});

describe("a cache dir that does not exist", () => {
  test("ls lists nothing, prune does nothing, verify finds nothing: none of them fails", async () => {
    const missing = path.join(await tempDir(), "never-created");
    assert.deepEqual(await listEntries({ cacheDir: missing }), {
      cacheDir: missing,
      totalBytes: 0,
      entries: [],
    });
    const pruned = await cli(["prune", "--max-size", "1GB", "--cache-dir", missing]);
    assert.equal(pruned.code, 0, pruned.stderr);
    assert.equal((await verifyEntries(undefined, { cacheDir: missing })).entries.length, 0);
    await assert.rejects(fs.stat(missing), "nothing was created");
  });
});

describe("CLI usage", () => {
  test("help for each command; flags of other commands and bad sizes or durations are usage errors", async () => {
    for (const command of ["ls", "rm", "prune", "verify", "dir"]) {
      const help = await cli(["help", command]);
      assert.equal(help.code, 0);
      assert.match(help.stdout, new RegExp(`^Usage: hubcache ${command} `));
    }
    assert.match((await cli(["--help"])).stdout, /hubcache prune {2,}remove dead leftovers/);
    const cases: [string[], RegExp][] = [
      [["ls", "--force"], /ls does not take --force/],
      [["prune", "--max-size", "lots"], /--max-size needs a size/],
      [["prune", "--unused-for", "3y"], /--unused-for needs a duration/],
      [["ls", "--sort", "age"], /--sort must be used, size or name/],
      [["rm"], /rm needs at least one HANDLE or HASH/],
      [["dir", "extra"], /dir takes no arguments/],
    ];
    for (const [args, message] of cases) {
      const result = await cli([...args, "--cache-dir", cacheDir]);
      assert.equal(result.code, 2, args.join(" "));
      assert.match(result.stderr, message);
    }
  });

  test("rm --dry-run and prune --json through the CLI", async () => {
    const dry = await cli(["rm", "--dry-run", "--cache-dir", cacheDir, handle("b")]);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, new RegExp(`^would remove ${handle("b")} \\([\\d.]+ KiB\\)\\nwould free `));
    assert.ok((await fs.stat(entryPaths(cacheDir, handle("b")).dir)).isDirectory());
    const pruned = await cli(["prune", "--json", "--max-size", "0", "--cache-dir", cacheDir]);
    const result = JSON.parse(pruned.stdout) as { ran: boolean; removed: unknown[]; totalBytesAfter: number };
    assert.equal(result.ran, true);
    assert.equal(result.removed.length, 3);
    assert.equal(result.totalBytesAfter, 0);
  });
});
