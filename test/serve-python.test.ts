/**
 * Python tensorflow_hub's resolver logic (re-enacted: test/helpers/tfhub_http_download.py, real
 * python3 processes) reading models through `hubcache serve`, and the mirror's cache shared with
 * Python on the serving machine.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { readTree, savedModelDir, tarGz, tempDir } from "./helpers/fixtures.js";
import { type HubServer, startHubServer } from "./helpers/hub-server.js";
import { startMirror } from "./helpers/mirror.js";
import {
  PYTHON_TFHUB,
  REPO_ROOT,
  TEST_TIMEOUT_MS,
  findPython,
  runCli,
  start,
  waitUntil,
} from "./helpers/processes.js";

const python = findPython();
const PYTHON_HTTP = path.join(REPO_ROOT, "test", "helpers", "tfhub_http_download.py");
const sha1 = (text: string): string => createHash("sha1").update(text).digest("hex");

let hub: HubServer;
let savedDir: string;
before(async () => {
  hub = await startHubServer();
  savedDir = await savedModelDir(256 * 1024);
  hub.add("/google/saved/1", { archive: await tarGz(savedDir), dir: savedDir });
});
after(() => hub.close());

async function pythonRun(script: string, args: string[]): Promise<{ path: string; downloaded: boolean }> {
  const run = start(python ?? "python3", [script, ...args]);
  const done = await run.done;
  assert.equal(done.code, 0, done.stderr);
  return JSON.parse(done.stdout.trim().split("\n").pop() ?? "{}") as { path: string; downloaded: boolean };
}

describe(
  "Python tensorflow_hub through hubcache serve",
  { skip: python === undefined && "python3 is not installed" },
  () => {
    test(
      "python clients and a hubcache client at once: one upstream download, identical files",
      { timeout: TEST_TIMEOUT_MS },
      async () => {
        const mirrorCache = await tempDir("mirror-");
        const mirror = await startMirror([
          "--cache-dir",
          mirrorCache,
          "--upstream",
          `tfhub.dev=${hub.origin}`,
        ]);
        try {
          // A Python process elsewhere uses the mirror's URL as its handle (it has no mirror setting).
          const handle = `${mirror.origin}/tfhub.dev/google/saved/1`;
          const release = hub.holdDownloads();
          const pythonCaches = await Promise.all([1, 2].map(() => tempDir("py-")));
          const pythons = pythonCaches.map((cacheDir) =>
            pythonRun(PYTHON_HTTP, ["--cache-dir", cacheDir, "--handle", handle]),
          );
          const node = runCli(
            ["resolve", "--cache-dir", await tempDir(), "https://tfhub.dev/google/saved/1"],
            {
              env: { HUBCACHE_MIRROR: mirror.origin },
            },
          );
          await waitUntil(() => hub.downloads().length > 0, "the upstream download");
          await new Promise((r) => setTimeout(r, 2000)); // every client reaches the mirror meanwhile
          release();
          const expected = await readTree(savedDir);
          for (const [i, result] of (await Promise.all(pythons)).entries()) {
            assert.equal(result.downloaded, true);
            assert.equal(result.path, path.join(pythonCaches[i] ?? "", sha1(handle)));
            const got = await readTree(result.path);
            assert.deepEqual([...got.keys()].sort(), [...expected.keys()].sort());
            for (const [name, bytes] of expected) assert.ok(got.get(name)?.equals(bytes), name);
          }
          const fromNode = await node;
          assert.equal(fromNode.code, 0, fromNode.stderr);
          assert.equal(hub.downloads().length, 1);
          // Python's urllib asks for no encoding: it was sent plain tar, which tarfile's r|* reads.
          assert.match(
            mirror.run.stderr(),
            /"GET \/tfhub\.dev\/google\/saved\/1\?tf-hub-format=compressed" 200/,
          );

          // On the serving machine, Python shares the mirror's cache: the canonical handle is a hit.
          const local = await pythonRun(PYTHON_TFHUB, [
            "--cache-dir",
            mirrorCache,
            "--handle",
            "https://tfhub.dev/google/saved/1",
            "--source",
            savedDir,
          ]);
          assert.deepEqual(local, {
            path: path.join(mirrorCache, sha1("https://tfhub.dev/google/saved/1")),
            downloaded: false,
          });
        } finally {
          await mirror.stop();
        }
      },
    );
  },
);
