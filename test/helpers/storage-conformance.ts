/**
 * The one conformance suite every Storage backend runs: local disk, s3rver, OpenStack Swift, the
 * GCS server, and the read-only subset for http(s). Each test gets a fresh, empty root.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import { describe, test } from "node:test";
import { type Storage } from "hubcache";
import { probeCreateOnly } from "../../src/storage/transfer.js";
import { expectCode } from "./assertions.js";

export interface ConformanceTarget {
  /** A fresh, empty storage root. */
  open(): Promise<Storage>;
  /** Read-only stores: put an object in place behind the storage's back. */
  seed?(storage: Storage, key: string, bytes: Buffer): Promise<void>;
  /**
   * What the server does with a create-only write on an existing key: refuse it (412),
   * reject the feature (501), or silently overwrite.
   */
  createOnly?: "enforced" | "rejected" | "ignored";
}

async function readAll(
  storage: Storage,
  key: string,
  range?: { start: number; end?: number },
): Promise<Buffer> {
  const { body } = await storage.read(key, range);
  return buffer(body);
}

async function keys(storage: Storage, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const object of storage.list(prefix)) out.push(object.key);
  // Order is the store's: S3 and GCS list in key order, s3rver does not.
  return out.sort();
}

export function storageConformance(name: string, target: ConformanceTarget): void {
  const readOnly = target.seed !== undefined;
  const put = async (storage: Storage, key: string, bytes: Buffer): Promise<void> => {
    if (target.seed) await target.seed(storage, key, bytes);
    else assert.equal(await storage.write(key, bytes), true);
  };
  const payload = randomBytes(2000);

  describe(`Storage conformance: ${name}`, () => {
    test("a missing object: stat is undefined, read is ERR_HUBCACHE_NOT_FOUND", async () => {
      const storage = await target.open();
      assert.equal(await storage.stat("nope/missing.bin"), undefined);
      await expectCode(storage.read("nope/missing.bin"), "ERR_HUBCACHE_NOT_FOUND");
    });

    test("read back whole, stat reports size, version and time", async () => {
      const storage = await target.open();
      await put(storage, "model/variables/data.bin", payload);
      assert.deepEqual(await readAll(storage, "model/variables/data.bin"), payload);
      const stat = await storage.stat("model/variables/data.bin");
      assert.ok(stat);
      assert.equal(stat.size, payload.length);
      assert.equal(stat.key, "model/variables/data.bin");
      assert.ok(stat.version, "a version (ETag, generation, mtime) is reported");
      assert.ok(stat.modifiedMs === undefined || Math.abs(stat.modifiedMs - Date.now()) < 24 * 3600e3);
      assert.equal(await storage.stat("model"), undefined, "a folder is not an object");
    });

    test("ranged reads: inside, open-ended, and past the end", async () => {
      const storage = await target.open();
      await put(storage, "r.bin", payload);
      assert.deepEqual(await readAll(storage, "r.bin", { start: 100, end: 199 }), payload.subarray(100, 200));
      assert.deepEqual(await readAll(storage, "r.bin", { start: 1700 }), payload.subarray(1700));
      assert.deepEqual(await readAll(storage, "r.bin", { start: 1990, end: 5000 }), payload.subarray(1990));
      const { body, length } = await storage.read("r.bin", { start: 10, end: 19 });
      assert.deepEqual(await buffer(body), payload.subarray(10, 20));
      assert.ok(length === undefined || length === 10);
    });

    test("keys with spaces, unicode and URL-special characters", async () => {
      const storage = await target.open();
      const key = "dir with space/ünï+cödé&=%20?.bin";
      await put(storage, key, Buffer.from("special"));
      assert.equal((await readAll(storage, key)).toString(), "special");
      assert.equal((await storage.stat(key))?.size, 7);
      if (!readOnly) assert.deepEqual(await keys(storage, "dir with space/"), [key]);
    });

    test("keys that could escape the root are refused", async () => {
      const storage = await target.open();
      for (const bad of ["../escape", "a/../../b", "/absolute", "a//b", "./a"]) {
        await expectCode(storage.read(bad), "ERR_HUBCACHE_INVALID_CONFIG");
        await expectCode(storage.stat(bad), "ERR_HUBCACHE_INVALID_CONFIG");
        if (!readOnly) await expectCode(storage.write(bad, "x"), "ERR_HUBCACHE_INVALID_CONFIG");
      }
    });

    if (readOnly) {
      test("read-only: writing, publishing, deleting and listing are refused with a coded error", async () => {
        const storage = await target.open();
        assert.equal(storage.readOnly, true);
        await expectCode(storage.write("x", "y"), "ERR_HUBCACHE_UNSUPPORTED");
        await expectCode(storage.publish("x", "y"), "ERR_HUBCACHE_UNSUPPORTED");
        await expectCode(storage.delete("x"), "ERR_HUBCACHE_UNSUPPORTED");
        await expectCode(keys(storage, ""), "ERR_HUBCACHE_UNSUPPORTED");
      });
      return;
    }

    test("write from a stream, with and without a known length, and an empty object", async () => {
      const storage = await target.open();
      const big = randomBytes(300_000);
      const chunks = (): Readable => Readable.from([big.subarray(0, 100_000), big.subarray(100_000)]);
      assert.equal(await storage.write("s/known", chunks(), { contentLength: big.length }), true);
      assert.equal(await storage.write("s/unknown", chunks()), true);
      assert.equal(await storage.write("s/empty", Buffer.alloc(0)), true);
      assert.deepEqual(await readAll(storage, "s/known"), big);
      assert.deepEqual(await readAll(storage, "s/unknown"), big);
      assert.equal((await readAll(storage, "s/empty")).length, 0);
      assert.equal((await storage.stat("s/empty"))?.size, 0);
    });

    test("list: every object under a plain string prefix, nothing outside the root", async () => {
      const storage = await target.open();
      for (const key of ["m/b.txt", "m/a/z.bin", "m/a/y.bin", "m.descriptor.txt", "n/x", "m0"]) {
        await storage.write(key, key);
      }
      assert.deepEqual(await keys(storage, "m/"), ["m/a/y.bin", "m/a/z.bin", "m/b.txt"]);
      assert.deepEqual(await keys(storage, "m"), [
        "m.descriptor.txt",
        "m/a/y.bin",
        "m/a/z.bin",
        "m/b.txt",
        "m0",
      ]);
      assert.deepEqual(await keys(storage, "zzz"), []);
      const sizes = [];
      for await (const object of storage.list("m/a/")) sizes.push(object.size);
      assert.deepEqual(sizes, [9, 9]);
      const sibling = await target.open();
      assert.deepEqual(await keys(sibling, ""), [], "another root sees none of it");
    });

    test("overwrite: the last write wins and the version changes", async () => {
      const storage = await target.open();
      await storage.write("o", "first");
      const v1 = (await storage.stat("o"))?.version;
      await storage.write("o", "second!");
      assert.equal((await readAll(storage, "o")).toString(), "second!");
      assert.notEqual((await storage.stat("o"))?.version, v1);
    });

    test(`create-only writes: ${target.createOnly ?? "enforced"} by this server, and the probe says so`, async () => {
      const storage = await target.open();
      const mode = target.createOnly ?? "enforced";
      if (mode === "rejected") {
        await expectCode(storage.write("c", "one", { ifAbsent: true }), "ERR_HUBCACHE_UNSUPPORTED");
        assert.equal(await storage.stat("c"), undefined, "nothing was written");
      } else {
        assert.equal(await storage.write("c", "one", { ifAbsent: true }), true);
        const second = await storage.write("c", "two", { ifAbsent: true });
        assert.equal(second, mode === "ignored", "refused only where create-only is enforced");
        assert.equal((await readAll(storage, "c")).toString(), mode === "ignored" ? "two" : "one");
      }
      assert.equal(await probeCreateOnly(storage), mode === "enforced");
      assert.deepEqual(await keys(storage, ".hubcache-probe"), [], "the probe cleans up");
    });

    test("publish moves an object whole; publishing a missing one is NOT_FOUND", async () => {
      const storage = await target.open();
      await storage.write("t.tmp/a/b.bin", payload);
      await storage.publish("t.tmp/a/b.bin", "t/a/b.bin");
      assert.deepEqual(await readAll(storage, "t/a/b.bin"), payload);
      assert.equal(await storage.stat("t.tmp/a/b.bin"), undefined);
      await expectCode(storage.publish("t.tmp/missing", "t/missing"), "ERR_HUBCACHE_NOT_FOUND");
    });

    test("delete removes; deleting a missing object is fine", async () => {
      const storage = await target.open();
      await storage.write("d/x", "x");
      await storage.delete("d/x");
      assert.equal(await storage.stat("d/x"), undefined);
      assert.deepEqual(await keys(storage, "d/"), []);
      await storage.delete("d/x");
    });

    test("parallel writes of different keys all land", async () => {
      const storage = await target.open();
      const names = Array.from({ length: 8 }, (_, i) => `p/${i}.bin`);
      const contents = names.map(() => randomBytes(5000));
      const written = await Promise.all(names.map((key, i) => storage.write(key, contents[i] as Buffer)));
      assert.deepEqual(
        written,
        names.map(() => true),
      );
      assert.deepEqual(await keys(storage, "p/"), names);
      for (const [i, key] of names.entries()) {
        assert.deepEqual(await readAll(storage, key), contents[i], `${key} holds its own bytes`);
      }
    });
  });
}
