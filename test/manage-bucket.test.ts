// Cache management on a bucket cache (--cache-dir s3://bucket/prefix, s3rver; gs:// on the GCS
// fake): ls, LRU through the `<hash>.used` marker, rm, prune to a size, verify finding a changed
// byte, through the same entry-store interface as on disk.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { handleHash } from "../src/cache/layout.js";
import { main } from "../src/cli/main.js";
import { listEntries, pruneCache, removeEntries, verifyEntries } from "../src/manage/index.js";
import { resolve } from "../src/resolve.js";
import { openStorage } from "../src/storage/open.js";
import { descriptorText } from "../src/cache/layout.js";
import { savedModelDir, tarGz } from "./helpers/fixtures.js";
import { type HubServer, startHubServer } from "./helpers/hub-server.js";
import { AWS_ISOLATION, type TestStores, startTestStores, uniqueBucket } from "./helpers/object-stores.js";

Object.assign(process.env, AWS_ISOLATION);

let stores: TestStores;
let hub: HubServer;
let env: Record<string, string>;
const bucket = uniqueBucket();
let counter = 0;

before(async () => {
  stores = await startTestStores(bucket);
  ({ env } = stores);
  hub = await startHubServer();
  for (const name of ["a", "b", "c"]) {
    hub.add(`/bucket/${name}/1`, { archive: await tarGz(await savedModelDir(16 * 1024)) });
  }
});
after(async () => {
  await Promise.all([stores.close(), hub.close()]);
});

const handle = (name: string): string => hub.handle(`/bucket/${name}/1`);

for (const scheme of ["s3", "gs"] as const) {
  describe(`a cache on ${scheme}://`, () => {
    test("ls, LRU by last use, rm, prune --max-size and verify, hubcache and Python-style entries", async () => {
      const cacheDir = `${scheme}://${bucket}/manage-${++counter}`;
      const options = { cacheDir, env };
      for (const name of ["a", "b", "c"]) await resolve(handle(name), options);
      // A Python-style entry: files and descriptor, no record.
      const storage = await openStorage(cacheDir, { env });
      const python = "https://tfhub.dev/google/python-in-bucket/1";
      await storage.write(`${handleHash(python)}/saved_model.pb`, "pb bytes");
      await storage.write(`${handleHash(python)}.descriptor.txt`, descriptorText(python));

      const listing = await listEntries({ ...options, sort: "name" });
      assert.deepEqual(
        listing.entries.map((e) => [e.handle, e.writer, e.state]),
        [
          [handle("a"), "hubcache", "ok"],
          [handle("b"), "hubcache", "ok"],
          [handle("c"), "hubcache", "ok"],
          [python, "tensorflow_hub", "ok"],
        ],
      );
      assert.ok(listing.entries.slice(0, 3).every((e) => /^[0-9a-f]{64}$/.test(e.archiveSha256 ?? "")));
      assert.equal(listing.entries[3]?.bytes, "pb bytes".length);

      // a is used again (a hit past the touch interval): it moves behind b and c.
      await new Promise((r) => setTimeout(r, 1100)); // object times have 1 s steps on some stores
      await resolve(handle("a"), { ...options, touchIntervalMs: 0 });
      const used = (await listEntries({ ...options, sort: "used" })).entries.map((e) => e.handle);
      assert.equal(used.at(-1), handle("a"), used.join(" "));

      // verify: all hubcache entries check out byte by byte; a changed byte (same size) is found.
      const clean = await verifyEntries(undefined, options);
      assert.equal(clean.damaged, 0);
      assert.equal(clean.entries.find((v) => v.entry.handle === python)?.status, "not-verifiable");
      const key = `${handleHash(handle("b"))}/saved_model.pb`;
      const original = Buffer.from(
        await new Response((await storage.read(key)).body as unknown as ReadableStream).arrayBuffer(),
      );
      const changed = Buffer.from(original);
      changed[7] = (changed[7] ?? 0) ^ 1;
      await storage.write(key, changed);
      const damaged = await verifyEntries(undefined, options);
      assert.equal(damaged.damaged, 1);
      const bad = damaged.entries.find((v) => v.status === "damaged");
      assert.equal(bad?.entry.handle, handle("b"));
      assert.deepEqual(
        bad?.problems.map((p) => [p.file, p.problem]),
        [["saved_model.pb", "crc32"]],
      );
      let stdout = "";
      const code = await main(["verify", "--cache-dir", cacheDir], {
        out: { stdout: (t) => (stdout += t), stderr: () => undefined },
        env: { ...process.env, ...env },
        stderrIsTTY: false,
      });
      assert.equal(code, 1);
      assert.match(stdout, /DAMAGED .*\/bucket\/b\/1\n {2}saved_model\.pb: CRC-32/);

      // rm by handle: its objects go (files, descriptor, record, last-use marker).
      const removed = await removeEntries([handle("b")], options);
      assert.equal(removed.results[0]?.status, "removed");
      const keys: string[] = [];
      for await (const object of storage.list(handleHash(handle("b")))) keys.push(object.key);
      assert.deepEqual(keys, []);

      // prune to the size of one entry: the least recently used go (c, python), a stays.
      const aBytes = listing.entries[0]?.bytes ?? 0;
      const pruned = await pruneCache({ ...options, maxBytes: aBytes });
      assert.equal(pruned.ran, true);
      assert.deepEqual(pruned.removed.map((p) => p.entry.handle).sort(), [handle("c"), python].sort());
      assert.deepEqual(
        (await listEntries(options)).entries.map((e) => e.handle),
        [handle("a")],
      );
      const lockKeys: string[] = [];
      for await (const object of storage.list("hubcache-prune")) lockKeys.push(object.key);
      assert.ok(!lockKeys.includes("hubcache-prune.lock"), "the prune lock was released");
    });
  });
}
