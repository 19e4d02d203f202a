// A TF Hub cache on object storage (TFHUB_CACHE_DIR=s3://… / gs://…) and two-tier mode
// (HUBCACHE_SHARED_CACHE), against s3rver behind a recording proxy and the GCS JSON API server.
// "Machines" are separate processes with their own local dirs.
import assert from "node:assert/strict";
import { promises as fs, readdirSync } from "node:fs";
import os from "node:os";
import { text } from "node:stream/consumers";
import { after, before, describe, test } from "node:test";
import { type HubcacheEvent, type Storage, handleHash, openStorage, resolve } from "hubcache";
import { entryPaths } from "../src/cache/layout.js";
import { spawnResolve, resolvedPath, whileRunning } from "./helpers/cli.js";
import { until } from "./helpers/wait.js";
import { readTree, savedModelDir, tarGz, tempDir } from "./helpers/fixtures.js";
import { type HubServer, startHubServer } from "./helpers/hub-server.js";
import { AWS_ISOLATION, type TestStores, startTestStores, uniqueBucket } from "./helpers/object-stores.js";
import { type PausingProxy, startPausingProxy } from "./helpers/pausing-proxy.js";
import { expectCode } from "./helpers/assertions.js";

Object.assign(process.env, AWS_ISOLATION);

let stores: TestStores;
let s3Proxy: PausingProxy;
let hub: HubServer;
let hubProxy: PausingProxy;
let source: string;
let env: Record<string, string>;
const bucket = uniqueBucket();
let counter = 0;
const MODEL = "/team/model/1";

before(async () => {
  stores = await startTestStores(bucket);
  ({ s3Proxy, env } = stores);
  hub = await startHubServer();
  hubProxy = await startPausingProxy(hub.origin);
  source = await savedModelDir(96 * 1024);
  hub.add(MODEL, { archive: await tarGz(source) });
});
after(async () => {
  await Promise.all([stores.close(), hubProxy.close(), hub.close()]);
});

/** A handle nobody resolved yet (its own cache entry), served by the hub through its proxy. */
function freshHandle(): string {
  return `${hubProxy.endpoint}${MODEL}?run=${++counter}`;
}

async function keys(storage: Storage, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const object of storage.list(prefix)) out.push(object.key);
  return out.sort();
}

async function readText(storage: Storage, key: string): Promise<string> {
  return text((await storage.read(key)).body);
}

async function sameAsSource(storage: Storage, hash: string): Promise<void> {
  const expected = await readTree(source);
  const actual = new Map<string, Buffer>();
  for (const key of await keys(storage, `${hash}/`)) {
    const chunks: Buffer[] = [];
    for await (const chunk of (await storage.read(key)).body) chunks.push(chunk as Buffer);
    actual.set(key.slice(hash.length + 1), Buffer.concat(chunks));
  }
  assert.deepEqual(actual, expected);
}

for (const scheme of ["s3", "gs"] as const) {
  describe(`TFHUB_CACHE_DIR=${scheme}://…`, () => {
    test("cold: TF Hub's layout under the prefix, the record written last; resolve returns the remote location", async () => {
      const cacheDir = `${scheme}://${bucket}/cache-${++counter}`;
      const handle = freshHandle();
      const hash = handleHash(handle);
      const tmp = await tempDir("staging-");
      const events: HubcacheEvent[] = [];
      // While the hub's archive is read, the model is staged on local disk: in the env's TMPDIR.
      const stage = `hubcache-stage-${hash}-`;
      const stagedIn = { envTmp: [] as string[], processTmp: [] as string[] };
      const location = await resolve(handle, {
        env: { ...env, TFHUB_CACHE_DIR: cacheDir, TMPDIR: tmp },
        onEvent: (e) => {
          events.push(e);
          if (e.type !== "download-start") return;
          stagedIn.envTmp.push(...readdirSync(tmp).filter((n) => n.startsWith(stage)));
          stagedIn.processTmp.push(...readdirSync(os.tmpdir()).filter((n) => n.startsWith(stage)));
        },
      });
      assert.equal(location, `${cacheDir}/${hash}`);
      const storage = await openStorage(cacheDir, { env });
      const sourceFiles = [...(await readTree(source)).keys()].map((f) => `${hash}/${f}`);
      assert.deepEqual(
        await keys(storage),
        [`${hash}.descriptor.txt`, `${hash}.hubcache.json`, ...sourceFiles].sort(),
      );
      await sameAsSource(storage, hash);
      const descriptor = await readText(storage, `${hash}.descriptor.txt`);
      assert.match(
        descriptor,
        new RegExp(
          `^Module: .+\\nDownload Time: \\d{4}-\\d\\d-\\d\\d .+\\nDownloader Hostname: .+ \\(PID:${process.pid}\\)$`,
        ),
      );
      const record = JSON.parse(await readText(storage, `${hash}.hubcache.json`)) as {
        files: { path: string; size: number }[];
      };
      assert.equal(record.files.length, sourceFiles.length);
      assert.ok(events.some((e) => e.type === "published" && e.path === location));
      // Staged in the env's TMPDIR (not the process's), and nothing was left on the local disk.
      assert.equal(stagedIn.envTmp.length, 1, `one staging dir in the env's TMPDIR ${tmp}`);
      assert.deepEqual(stagedIn.processTmp, [], "nothing staged in the process's own tmpdir");
      assert.deepEqual(await fs.readdir(tmp), []);

      // Warm: a hit from the bucket, no hub request, also offline.
      const hubBefore = hub.requests.length;
      const hits: HubcacheEvent[] = [];
      assert.equal(
        await resolve(handle, { cacheDir, env, offline: true, onEvent: (e) => hits.push(e) }),
        location,
      );
      assert.equal(hub.requests.length, hubBefore);
      assert.deepEqual(
        hits.map((e) => e.type),
        ["cache-hit"],
      );
    });

    test("an entry written by Python (files + descriptor, no record) counts, unless a lock says it may be mid-copy", async () => {
      const cacheDir = `${scheme}://${bucket}/cache-${++counter}`;
      const handle = freshHandle();
      const hash = handleHash(handle);
      const storage = await openStorage(cacheDir, { env });
      for (const [file, bytes] of await readTree(source)) await storage.write(`${hash}/${file}`, bytes);
      await storage.write(
        `${hash}.descriptor.txt`,
        `Module: ${handle}\nDownload Time: 2024-01-01 00:00:00\nDownloader Hostname: py (PID:1)`,
      );
      await storage.write(`${hash}.lock`, "other-host.123.0123456789abcdef0123456789abcdef");
      await expectCode(resolve(handle, { cacheDir, env, offline: true }), "ERR_HUBCACHE_OFFLINE");
      await storage.delete(`${hash}.lock`);
      const events: HubcacheEvent[] = [];
      assert.equal(
        await resolve(handle, { cacheDir, env, offline: true, onEvent: (e) => events.push(e) }),
        `${cacheDir}/${hash}`,
      );
      assert.deepEqual(
        events.map((e) => (e.type === "cache-hit" ? `${e.type} ${e.writer}` : e.type)),
        ["cache-hit other"],
      );
    });

    test("a damaged entry (a file gone, or files with no descriptor or record) never counts and is replaced", async () => {
      const cacheDir = `${scheme}://${bucket}/cache-${++counter}`;
      const handle = freshHandle();
      const hash = handleHash(handle);
      const storage = await openStorage(cacheDir, { env });
      await resolve(handle, { cacheDir, env });
      await storage.delete(`${hash}/variables/variables.index`);
      await expectCode(resolve(handle, { cacheDir, env, offline: true }), "ERR_HUBCACHE_OFFLINE");
      const events: HubcacheEvent[] = [];
      await resolve(handle, { cacheDir, env, onEvent: (e) => events.push(e) });
      assert.ok(
        events.some((e) => e.type === "cache-incomplete" && /variables\.index is missing/.test(e.reason)),
      );
      await sameAsSource(storage, hash);

      // Stray files with neither descriptor nor record: removed, not mixed into the new entry.
      const other = freshHandle();
      const otherHash = handleHash(other);
      await storage.write(`${otherHash}/stray.bin`, "left by a crash");
      await storage.write(`${otherHash}/saved_model.pb`, "half");
      await expectCode(resolve(other, { cacheDir, env, offline: true }), "ERR_HUBCACHE_OFFLINE");
      await resolve(other, { cacheDir, env });
      await sameAsSource(storage, otherHash);
    });

    test("two-tier: local miss → shared hit without the hub; hub downloads published to both; offline reads the shared tier", async () => {
      const shared = `${scheme}://${bucket}/shared-${++counter}`;
      const handle = freshHandle();
      const hash = handleHash(handle);
      const [machineA, machineB, machineC] = [await tempDir(), await tempDir(), await tempDir()];
      const before = hub.downloads().length;
      const a = await resolve(handle, { cacheDir: machineA, sharedCache: shared, env });
      assert.equal(a, entryPaths(machineA, handle).dir, "two-tier returns the local path");
      assert.equal(hub.downloads().length, before + 1);
      await sameAsSource(await openStorage(shared, { env }), hash);

      const events: HubcacheEvent[] = [];
      const b = await resolve(handle, {
        cacheDir: machineB,
        env: { ...env, HUBCACHE_SHARED_CACHE: shared },
        onEvent: (e) => events.push(e),
      });
      assert.equal(b, entryPaths(machineB, handle).dir);
      assert.equal(hub.downloads().length, before + 1, "machine B never asked the hub");
      assert.deepEqual(await readTree(b), await readTree(source));
      assert.ok(events.some((e) => e.type === "download-start" && e.url === `${shared}/${hash}`));
      // B's local entry is a complete hubcache entry: the next resolve is a local hit.
      const local: HubcacheEvent[] = [];
      await resolve(handle, {
        cacheDir: machineB,
        sharedCache: shared,
        env,
        offline: true,
        onEvent: (e) => local.push(e),
      });
      assert.deepEqual(
        local.map((e) => e.type),
        ["cache-hit"],
      );

      // Offline: the shared tier is still a cache; the hub is not.
      assert.equal(
        await resolve(handle, { cacheDir: machineC, sharedCache: shared, env, offline: true }),
        entryPaths(machineC, handle).dir,
      );
      assert.deepEqual(await readTree(entryPaths(machineC, handle).dir), await readTree(source));
      await expectCode(
        resolve(freshHandle(), { cacheDir: machineC, sharedCache: shared, env, offline: true }),
        "ERR_HUBCACHE_OFFLINE",
      );
      assert.equal(hub.downloads().length, before + 1);
    });
  });
}

describe("an unreadable record left in the bucket", () => {
  for (const scheme of ["s3", "gs"] as const) {
    test(`${scheme}: is replaced by a whole entry, once, not looped on`, { timeout: 120_000 }, async () => {
      const cacheDir = `${scheme}://${bucket}/unreadable-${++counter}`;
      const handle = freshHandle();
      const hash = handleHash(handle);
      const storage = await openStorage(cacheDir, { env });
      await storage.write(`${hash}.hubcache.json`, JSON.stringify({ version: 999 }));
      const events: HubcacheEvent[] = [];
      assert.equal(
        await resolve(handle, { cacheDir, env, onEvent: (e) => events.push(e) }),
        `${cacheDir}/${hash}`,
      );
      assert.equal(events.filter((e) => e.type === "published").length, 1);
      await sameAsSource(storage, hash);
      const before = hub.downloads().length;
      await resolve(handle, { cacheDir, env });
      assert.equal(hub.downloads().length, before, "a hit now");
    });
  }
});

describe("a shared cache this machine may only read", () => {
  test("a hit is used; a miss downloads from the hub into the local tier with a warning, and the shared tier is left alone", async () => {
    const shared = `s3://${bucket}/read-only-${++counter}`;
    const cached = freshHandle();
    await resolve(cached, { cacheDir: await tempDir(), sharedCache: shared, env }); // a writer filled it
    const sharedStore = await openStorage(shared, { env });
    const objectsBefore = await keys(sharedStore);

    // This machine has no credentials: unsigned reads work, writes are refused.
    const readOnly = { ...AWS_ISOLATION, AWS_ENDPOINT_URL_S3: s3Proxy.endpoint, AWS_REGION: "us-east-1" };
    const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
    delete process.env.AWS_ACCESS_KEY_ID;
    delete process.env.AWS_SECRET_ACCESS_KEY;
    try {
      const cacheDir = await tempDir();
      const downloads = hub.downloads().length;
      assert.equal(
        await resolve(cached, { cacheDir, sharedCache: shared, env: readOnly }),
        entryPaths(cacheDir, cached).dir,
      );
      assert.equal(hub.downloads().length, downloads, "the shared hit was used, not the hub");
      assert.deepEqual(await readTree(entryPaths(cacheDir, cached).dir), await readTree(source));

      const fresh = freshHandle();
      const events: HubcacheEvent[] = [];
      const dir = await resolve(fresh, {
        cacheDir,
        sharedCache: shared,
        env: readOnly,
        onEvent: (e) => events.push(e),
      });
      assert.equal(dir, entryPaths(cacheDir, fresh).dir);
      assert.deepEqual(await readTree(dir), await readTree(source));
      assert.equal(hub.downloads().length, downloads + 1);
      const warning = events.find((e) => e.type === "warning");
      assert.match(
        warning?.type === "warning" ? warning.message : "",
        /Cannot (write|publish) to the shared cache/,
      );
    } finally {
      if (saved.id !== undefined) process.env.AWS_ACCESS_KEY_ID = saved.id;
      if (saved.secret !== undefined) process.env.AWS_SECRET_ACCESS_KEY = saved.secret;
    }
    assert.deepEqual(await keys(sharedStore), objectsBefore, "nothing was written to the shared tier");
  });
});

describe("settings", () => {
  test("HUBCACHE_SHARED_CACHE beside a cache dir on object storage is refused with a hint", async () => {
    const error = await expectCode(
      resolve(freshHandle(), {
        env: { ...env, TFHUB_CACHE_DIR: `s3://${bucket}/c`, HUBCACHE_SHARED_CACHE: `s3://${bucket}/s` },
      }),
      "ERR_HUBCACHE_INVALID_CONFIG",
    );
    assert.match(error.hint ?? "", /not both/);
  });
});

describe("machines sharing a bucket (separate processes, separate local dirs)", () => {
  test("two machines resolving at once: one hub download, one entry, the same location", async () => {
    const prefix = `fleet-${++counter}`;
    const cacheDir = `s3://${bucket}/${prefix}`;
    const handle = freshHandle();
    const hash = handleHash(handle);
    const before = hub.downloads().length;
    const machineEnv = async (): Promise<Record<string, string>> => ({
      ...env,
      TFHUB_CACHE_DIR: cacheDir,
      TMPDIR: await tempDir("machine-"),
    });
    const listsOfEntry = (): number =>
      s3Proxy.requests.filter(
        (r) => r.method === "GET" && decodeURIComponent(r.url).includes(`prefix=${prefix}/${hash}/`),
      ).length;

    // Machine A takes the lock and is held at the hub's archive download.
    const held = hubProxy.holdWhen((r) => r.url.startsWith("/storage/") && r.url.includes(MODEL));
    const a = spawnResolve([handle], await machineEnv());
    await whileRunning(a, held.reached, "machine A's archive download");
    // Machine B starts, finds no entry (1 listing), finds the lock, and checks again while waiting (2).
    const listsBefore = listsOfEntry();
    const b = spawnResolve([handle], await machineEnv());
    await whileRunning(
      b,
      until(() => listsOfEntry() >= listsBefore + 2, "machine B to look for the entry twice"),
      "machine B looked for the entry twice",
    );
    held.release();
    const [ra, rb] = await Promise.all([a.done, b.done]);
    assert.equal(resolvedPath(ra), `${cacheDir}/${hash}`);
    assert.equal(resolvedPath(rb), `${cacheDir}/${hash}`);
    assert.equal(hub.downloads().length, before + 1, "one download from the hub for the whole fleet");
    const storage = await openStorage(cacheDir, { env });
    await sameAsSource(storage, hash);
    assert.deepEqual(
      (await keys(storage)).filter((k) => !k.startsWith(`${hash}/`)),
      [`${hash}.descriptor.txt`, `${hash}.hubcache.json`],
      "no lock, temp prefix or probe left",
    );
  });

  test("two-tier machines: the second one copies from the shared cache, not the hub", async () => {
    const shared = `s3://${bucket}/shared-fleet-${++counter}`;
    const handle = freshHandle();
    const before = hub.downloads().length;
    const dirA = await tempDir("machine-a-");
    const dirB = await tempDir("machine-b-");
    const ra = await spawnResolve([handle], { ...env, TFHUB_CACHE_DIR: dirA, HUBCACHE_SHARED_CACHE: shared })
      .done;
    assert.equal(resolvedPath(ra), entryPaths(dirA, handle).dir);
    const rb = await spawnResolve([handle], { ...env, TFHUB_CACHE_DIR: dirB, HUBCACHE_SHARED_CACHE: shared })
      .done;
    assert.equal(resolvedPath(rb), entryPaths(dirB, handle).dir);
    assert.equal(hub.downloads().length, before + 1);
    assert.deepEqual(await readTree(entryPaths(dirB, handle).dir), await readTree(source));
    // B again: a local hit, the bucket is not asked.
    const s3Before = s3Proxy.requests.length;
    const again = await spawnResolve([handle], {
      ...env,
      TFHUB_CACHE_DIR: dirB,
      HUBCACHE_SHARED_CACHE: shared,
    }).done;
    assert.equal(resolvedPath(again), entryPaths(dirB, handle).dir);
    assert.equal(s3Proxy.requests.length, s3Before);
  });
});

describe("a machine killed mid-publish (SIGKILL) never leaves a visible partial entry", () => {
  const isPut = (r: { method: string; headers: Record<string, unknown> }): boolean =>
    r.method === "PUT" && r.headers["x-amz-copy-source"] === undefined;
  const points = [
    {
      name: "while uploading to the temp prefix",
      nth: 2,
      match: (r: { method: string; url: string; headers: Record<string, unknown> }) =>
        isPut(r) && r.url.includes(".tmp/"),
      redownload: true,
    },
    {
      name: "while copying into <hash>/",
      nth: 3,
      match: (r: { method: string; url: string; headers: Record<string, unknown> }) =>
        r.method === "PUT" && r.headers["x-amz-copy-source"] !== undefined,
      redownload: true,
    },
    {
      name: "after the last copy and the descriptor, before the record",
      nth: 1,
      match: (r: { method: string; url: string; headers: Record<string, unknown> }) =>
        isPut(r) && r.url.includes(".hubcache.json"),
      redownload: false,
    },
  ];
  for (const point of points) {
    test(point.name, async () => {
      const cacheDir = `s3://${bucket}/crash-${++counter}`;
      const prefix = `crash-${counter}`;
      const handle = freshHandle();
      const hash = handleHash(handle);
      const held = s3Proxy.holdWhen((r) => r.url.includes(`/${prefix}/`) && point.match(r), point.nth);
      const machine = spawnResolve([handle], {
        ...env,
        TFHUB_CACHE_DIR: cacheDir,
        TMPDIR: await tempDir("victim-"),
      });
      await whileRunning(machine, held.reached, `the request to hold (${point.name})`);
      if (point.nth === 3) {
        // Copies run in parallel: holding the 3rd does not mean an earlier one has landed yet.
        const storage = await openStorage(cacheDir, { env });
        await until(
          async () => (await keys(storage)).some((k) => k.startsWith(`${hash}/`)),
          "a first copied file",
        );
      }
      machine.child.kill("SIGKILL");
      const result = await machine.done;
      assert.equal(result.signal, "SIGKILL");
      held.drop(); // the dead machine's last request never reaches the store

      const storage = await openStorage(cacheDir, { env });
      const left = await keys(storage);
      assert.ok(left.includes(`${hash}.lock`), "the dead machine's lock is still there");
      assert.ok(!left.includes(`${hash}.hubcache.json`));
      if (point.nth === 3) {
        const copied = left.filter((k) => k.startsWith(`${hash}/`)).length;
        assert.ok(
          copied >= 1 && copied < (await readTree(source)).size,
          `a partial <hash>/ exists (${copied} files)`,
        );
      }
      // Not visible: offline, this is a miss.
      await expectCode(resolve(handle, { cacheDir, env, offline: true }), "ERR_HUBCACHE_OFFLINE");

      // The next resolve takes the dead holder's lock over at once and ends with a complete entry.
      const before = hub.downloads().length;
      const events: HubcacheEvent[] = [];
      assert.equal(
        await resolve(handle, { cacheDir, env, onEvent: (e) => events.push(e) }),
        `${cacheDir}/${hash}`,
      );
      assert.ok(events.some((e) => e.type === "lock-takeover" && e.reason === "holder-dead"));
      assert.equal(hub.downloads().length, before + (point.redownload ? 1 : 0));
      await sameAsSource(storage, hash);
      const after = await keys(storage);
      assert.deepEqual(
        after.filter((k) => !k.startsWith(`${hash}/`) && k !== `${hash}.hubcache.json`),
        [`${hash}.descriptor.txt`],
      );
    });
  }
});

describe("two holders at once on a store without create-only writes", () => {
  test("a holder that finds another holder's record over a broken entry repairs it instead of returning it", async () => {
    const cacheDir = `s3://${bucket}/two-holders-${++counter}`;
    const prefix = `two-holders-${counter}`;
    const handle = freshHandle();
    const hash = handleHash(handle);
    const storage = await openStorage(cacheDir, { env });
    // Hold our holder's first upload to its temp prefix; meanwhile "the other holder" publishes a
    // record whose files are not all there (its copy was cut short by our cleanup, say).
    const held = s3Proxy.holdWhen(
      (r) => r.method === "PUT" && r.url.includes(`/${prefix}/`) && r.url.includes(".tmp/"),
    );
    const events: HubcacheEvent[] = [];
    const resolving = resolve(handle, { cacheDir, env, onEvent: (e) => events.push(e) });
    await held.reached;
    const [first] = [...(await readTree(source)).entries()];
    assert.ok(first);
    await storage.write(`${hash}/${first[0]}`, first[1]);
    await storage.write(
      `${hash}.hubcache.json`,
      JSON.stringify({
        version: 1,
        handle,
        uid: "0".repeat(32),
        createdAt: new Date().toISOString(),
        bytes: 1,
        files: [...(await readTree(source)).entries()].map(([p, b]) => ({ path: p, size: b.length })),
      }),
    );
    held.release();
    assert.equal(await resolving, `${cacheDir}/${hash}`);
    assert.ok(
      events.some((e) => e.type === "cache-incomplete"),
      "the broken entry was seen",
    );
    await sameAsSource(storage, hash);
    // A whole entry now: the next resolve is a hit without the hub.
    const before = hub.downloads().length;
    assert.equal(await resolve(handle, { cacheDir, env }), `${cacheDir}/${hash}`);
    assert.equal(hub.downloads().length, before);
  });
});
