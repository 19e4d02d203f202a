/**
 * A cache dir copied whole (`cp -a`, rsync, fs.cp, a CI cache restore through tar) loses the
 * identity its records name (inode, birth time). hubcache then checks the copied entry against its
 * record: a whole copy is a hit (no request), a copy with a file missing or of another size is
 * incomplete and downloaded again (issue 10). A Python entry that replaced a hubcache one (the
 * record left as it was) is still Python's: test/resolve.test.ts covers that.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { execFile } from "node:child_process";
import { promises as fs } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";
import { entryPaths } from "../src/cache/layout.js";
import type { HubcacheEvent } from "../src/events.js";
import { resolve } from "../src/resolve.js";
import { readTree, savedModelDir, tarGz, tempDir } from "./helpers/fixtures.js";
import { type HubServer, startHubServer } from "./helpers/hub-server.js";

const run = promisify(execFile);

let hub: HubServer;
let handle: string;
let source: string;
/** A cache holding the model, written by hubcache; every test copies it. */
let original: string;

before(async () => {
  hub = await startHubServer();
  source = await savedModelDir(64 * 1024);
  hub.add("/copied/model/1", { archive: await tarGz(source) });
  handle = hub.handle("/copied/model/1");
  original = path.join(await tempDir("hubcache-copied-"), "cache");
  await resolve(handle, { cacheDir: original, env: {}, flags: {} });
});
after(() => hub.close());

type Copier = (from: string, to: string) => Promise<void>;

/** rsync is not on every machine (Swift's packages bring it in CI); without it its case is skipped. */
const rsyncMissing = spawnSync("rsync", ["--version"]).error !== undefined;

const copiers: [string, Copier][] = [
  ["cp -a", async (from, to) => void (await run("cp", ["-a", from, to]))],
  ["rsync -a", async (from, to) => void (await run("rsync", ["-a", `${from}/`, `${to}/`]))],
  ["fs.cp", (from, to) => fs.cp(from, to, { recursive: true })],
  [
    "a tar round trip (a CI cache restore)",
    async (from, to) => {
      const archive = path.join(path.dirname(to), "cache.tar");
      await run("tar", ["-cf", archive, "-C", from, "."]);
      await fs.mkdir(to);
      await run("tar", ["-xf", archive, "-C", to]);
    },
  ],
];

async function copyOf(copy: Copier): Promise<string> {
  const target = path.join(await tempDir("hubcache-copied-"), "copy");
  await copy(original, target);
  return target;
}

async function resolveIn(
  cacheDir: string,
): Promise<{ dir: string; events: HubcacheEvent[]; downloads: number }> {
  const before = hub.downloads().length;
  const events: HubcacheEvent[] = [];
  const dir = await resolve(handle, { cacheDir, env: {}, flags: {}, onEvent: (e) => events.push(e) });
  return { dir, events, downloads: hub.downloads().length - before };
}

for (const [name, copy] of copiers) {
  const skip =
    name.startsWith("rsync") && rsyncMissing ? "rsync is not installed (apt-get install -y rsync)" : false;
  describe(`a cache copied with ${name}`, { skip }, () => {
    test("a whole copy is a hit: no request, hubcache's entry", async () => {
      const cacheDir = await copyOf(copy);
      const requests = hub.requests.length;
      const { dir, events } = await resolveIn(cacheDir);
      assert.equal(dir, entryPaths(cacheDir, handle).dir);
      assert.equal(hub.requests.length, requests, "no request");
      assert.deepEqual(events, [{ type: "cache-hit", handle, path: dir, writer: "hubcache" }]);
    });

    test("a copy with a file deleted is incomplete and downloaded again", async () => {
      const cacheDir = await copyOf(copy);
      const { dir: entry } = entryPaths(cacheDir, handle);
      await fs.rm(path.join(entry, "variables", "variables.index"));
      const { dir, events, downloads } = await resolveIn(cacheDir);
      assert.equal(dir, entry);
      assert.equal(downloads, 1, "downloaded again");
      assert.ok(
        events.some(
          (e) => e.type === "cache-incomplete" && /variables\/variables\.index is missing/.test(e.reason),
        ),
        JSON.stringify(events),
      );
      assert.deepEqual(await readTree(dir), await readTree(source));
      // And now it is a plain hit again.
      assert.equal((await resolveIn(cacheDir)).downloads, 0);
    });

    test("a copy with a truncated file is incomplete and downloaded again", async () => {
      const cacheDir = await copyOf(copy);
      const { dir: entry } = entryPaths(cacheDir, handle);
      await fs.truncate(path.join(entry, "variables", "variables.data-00000-of-00001"), 10);
      const { dir, events, downloads } = await resolveIn(cacheDir);
      assert.equal(downloads, 1, "downloaded again");
      assert.ok(
        events.some((e) => e.type === "cache-incomplete" && /has 10 bytes, expected \d+/.test(e.reason)),
        JSON.stringify(events),
      );
      assert.deepEqual(await readTree(dir), await readTree(source));
    });
  });
}

describe("a copied cache whose records come from an older hubcache (no record identity)", () => {
  test("is checked against its records too", async () => {
    const cacheDir = await copyOf(copiers[0]![1]);
    const paths = entryPaths(cacheDir, handle);
    const record = JSON.parse(await fs.readFile(paths.record, "utf8")) as Record<string, unknown>;
    assert.ok(record.recordFile, "today's records carry their own identity");
    delete record.recordFile;
    await fs.writeFile(paths.record, JSON.stringify(record));
    assert.equal((await resolveIn(cacheDir)).downloads, 0, "a whole copy is a hit");
    await fs.rm(path.join(paths.dir, "saved_model.pb"));
    const { dir, downloads } = await resolveIn(cacheDir);
    assert.equal(downloads, 1, "a partial one is downloaded again");
    assert.deepEqual(await readTree(dir), await readTree(source));
  });
});
