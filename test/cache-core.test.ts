// The cache core (src/cache/): what issue 9 fixed in it. A cancelled wait or transfer on object
// storage is ERR_HUBCACHE_ABORTED (not a raw AbortError); a credentialed handle never reaches the
// cache's files (descriptor, record) in clear; an entry store removes an entry in one visible step.
import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import path from "node:path";
import { text } from "node:stream/consumers";
import { after, before, describe, test } from "node:test";
import { type Storage, handleHash, openStorage, resolve } from "hubcache";
import { DiskEntryStore } from "../src/cache/disk-store.js";
import { ObjectEntryStore } from "../src/cache/object-store.js";
import { openStorage as openSrcStorage } from "../src/storage/open.js";
import { expectCode } from "./helpers/assertions.js";
import { savedModelDir, tarGz, tempDir } from "./helpers/fixtures.js";
import { type HubServer, startHubServer } from "./helpers/hub-server.js";
import { AWS_ISOLATION, type TestStores, startTestStores, uniqueBucket } from "./helpers/object-stores.js";

Object.assign(process.env, AWS_ISOLATION);

let stores: TestStores;
let hub: HubServer;
let env: Record<string, string>;
const bucket = uniqueBucket();
let counter = 0;
const MODEL = "/team/model/1";
const SECRETS = ["hunter2pass", "topsecret42"];

before(async () => {
  stores = await startTestStores(bucket);
  ({ env } = stores);
  hub = await startHubServer();
  hub.add(MODEL, { archive: await tarGz(await savedModelDir(32 * 1024)) });
});
after(async () => {
  await Promise.all([stores.close(), hub.close()]);
});

function freshHandle(): string {
  return `${hub.origin}${MODEL}?run=${++counter}`;
}

/** The same model, with a password in the URL and a token in the query. */
function credentialedHandle(): string {
  const url = new URL(freshHandle());
  url.username = "user";
  url.password = SECRETS[0] as string;
  url.searchParams.set("access_token", SECRETS[1] as string);
  return url.toString();
}

async function allFiles(root: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await fs.readdir(root, { withFileTypes: true })) {
    const full = path.join(root, entry.name);
    if (entry.isDirectory()) out.push(...(await allFiles(full)));
    else out.push(full);
  }
  return out;
}

async function allObjects(storage: Pick<Storage, "list">): Promise<string[]> {
  const out: string[] = [];
  for await (const object of storage.list("")) out.push(object.key);
  return out;
}

describe("a cancelled wait or transfer on object storage is ERR_HUBCACHE_ABORTED", () => {
  for (const scheme of ["s3", "gs"] as const) {
    test(`${scheme}: waiting for a lock another machine holds`, async () => {
      const cacheDir = `${scheme}://${bucket}/abort-wait-${++counter}`;
      const handle = freshHandle();
      const storage = await openStorage(cacheDir, { env });
      // A live holder on another machine: never provably gone, never stale within the test.
      await storage.write(`${handleHash(handle)}.lock`, `elsewhere.example.12345.${"a".repeat(32)}`);
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 300);
      const error = await expectCode(
        resolve(handle, { cacheDir, env, signal: controller.signal }),
        "ERR_HUBCACHE_ABORTED",
      );
      assert.match(error.message, /aborted/);
    });
  }

  test("two tiers: copying a shared entry down", async () => {
    const sharedCache = `s3://${bucket}/abort-copy-${++counter}`;
    const handle = freshHandle();
    await resolve(handle, { cacheDir: await tempDir(), sharedCache, env }); // another machine filled it
    const hold = stores.s3Proxy.holdWhen(
      (request) => request.method === "GET" && request.url.includes(`/${handleHash(handle)}/`),
    );
    const controller = new AbortController();
    const cacheDir = await tempDir();
    const resolving = resolve(handle, { cacheDir, sharedCache, env, signal: controller.signal });
    await hold.reached;
    controller.abort();
    hold.release();
    await expectCode(resolving, "ERR_HUBCACHE_ABORTED");
    const left = (await fs.readdir(cacheDir)).filter(
      (name) => name.endsWith(".lock") || name.includes(".tmp"),
    );
    assert.deepEqual(left, [], "no lock or temp dir left");
  });
});

describe("a credentialed handle is written redacted into the cache", () => {
  test("local cache dir: no file holds the password or the token; the key is still sha1 of the exact handle", async () => {
    const cacheDir = await tempDir();
    const handle = credentialedHandle();
    const dir = await resolve(handle, { cacheDir });
    assert.equal(dir, path.join(cacheDir, handleHash(handle)));
    const descriptor = await fs.readFile(`${dir}.descriptor.txt`, "utf8");
    assert.match(descriptor, /^Module: http:\/\/\*\*\*@127\.0\.0\.1/);
    const record = JSON.parse(await fs.readFile(`${dir}.hubcache.json`, "utf8")) as { handle: string };
    assert.ok(record.handle.includes("access_token=REDACTED"), record.handle);
    for (const file of await allFiles(cacheDir)) {
      const content = await fs.readFile(file, "latin1");
      for (const secret of SECRETS) assert.ok(!content.includes(secret), `${file} holds ${secret}`);
    }
    // A warm resolve is a hit: nothing compares the redacted record with the real handle.
    const before = hub.downloads().length;
    assert.equal(await resolve(handle, { cacheDir }), dir);
    assert.equal(hub.downloads().length, before);
  });

  test("cache on s3://: no object holds the password or the token", async () => {
    const cacheDir = `s3://${bucket}/redacted-${++counter}`;
    const handle = credentialedHandle();
    await resolve(handle, { cacheDir, env });
    const storage = await openStorage(cacheDir, { env });
    const objects = await allObjects(storage);
    assert.ok(objects.includes(`${handleHash(handle)}.hubcache.json`));
    for (const key of objects) {
      const content = await text((await storage.read(key)).body);
      for (const secret of SECRETS) assert.ok(!content.includes(secret), `${key} holds ${secret}`);
    }
  });
});

describe("entry stores remove an entry whole", () => {
  test("disk: the entry, its descriptor and record go; the next resolve downloads it again", async () => {
    const cacheDir = await tempDir();
    const handle = freshHandle();
    const dir = await resolve(handle, { cacheDir });
    const store = new DiskEntryStore(cacheDir, { lockTimeoutMs: 60_000 });
    const listed = [];
    for await (const entry of store.list()) listed.push(entry);
    assert.deepEqual(
      listed.map((entry) => [entry.hash, entry.state, entry.writer]),
      [[handleHash(handle), "ok", "hubcache"]],
    );
    await store.remove(handleHash(handle));
    assert.deepEqual(await fs.readdir(cacheDir), []);
    assert.deepEqual(await store.inspect(handleHash(handle)), { state: "missing" });
    const before = hub.downloads().length;
    assert.equal(await resolve(handle, { cacheDir }), dir);
    assert.equal(hub.downloads().length, before + 1);
  });

  test("s3: the record and descriptor go first, then the files", async () => {
    const cacheDir = `s3://${bucket}/remove-${++counter}`;
    const handle = freshHandle();
    await resolve(handle, { cacheDir, env });
    // The store from src/ reads through src/'s storage (its errors are src/'s classes).
    const storage = await openSrcStorage(cacheDir, { env });
    const store = new ObjectEntryStore(storage, { lockTimeoutMs: 60_000 });
    assert.equal((await store.inspect(handleHash(handle))).state, "hit");
    await store.remove(handleHash(handle));
    assert.deepEqual(await allObjects(storage), []);
    assert.deepEqual(await store.inspect(handleHash(handle)), { state: "missing" });
  });
});
