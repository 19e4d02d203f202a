// Opt-in: the conformance suite against the firebase-tools Storage emulator, a second opinion on
// the in-repo GCS server. firebase-tools is not a dependency (312 MB); point
// HUBCACHE_TEST_FIREBASE_TOOLS at an installed copy (the folder holding its package.json).
import net from "node:net";
import { createRequire } from "node:module";
import path from "node:path";
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { handleHash, openStorage, resolve } from "hubcache";
import { savedModelDir, tarGz } from "./helpers/fixtures.js";
import { startHubServer } from "./helpers/hub-server.js";
import { storageConformance } from "./helpers/storage-conformance.js";

const tools = process.env.HUBCACHE_TEST_FIREBASE_TOOLS;
const skip = tools ? false : "set HUBCACHE_TEST_FIREBASE_TOOLS to a firebase-tools install to run this";

interface Emulator {
  _rulesRuntime: { start(): Promise<void>; stop(): Promise<void> };
  _rulesManager: unknown;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

let url = "";
let emulator: Emulator | undefined;
let counter = 0;

describe("firebase-tools Storage emulator", { skip }, () => {
  before(async () => {
    // Started in-process with its rules runtime stubbed (it needs Java 21 and a download otherwise).
    const require = createRequire(path.join(tools ?? "", "package.json"));
    const { StorageEmulator } = require("firebase-tools/lib/emulator/storage") as {
      StorageEmulator: new (options: Record<string, unknown>) => Emulator;
    };
    const { EmulatorRegistry } = require("firebase-tools/lib/emulator/registry") as {
      EmulatorRegistry: { start(e: Emulator): Promise<void>; stop(name: string): Promise<void> };
    };
    const port = await freePort();
    emulator = new StorageEmulator({
      projectId: "demo-hubcache",
      host: "127.0.0.1",
      port,
      rules: [],
      auto_download: false,
    });
    emulator._rulesRuntime.start = async () => undefined;
    emulator._rulesRuntime.stop = async () => undefined;
    emulator._rulesManager = {
      start: async () => undefined,
      stop: async () => undefined,
      getRuleset: () => undefined,
    };
    await EmulatorRegistry.start(emulator);
    url = `http://127.0.0.1:${port}`;
  });
  after(async () => {
    await emulator?.stop();
  });

  storageConformance("firebase-tools Storage emulator", {
    open: () =>
      openStorage(`gs://demo-hubcache.appspot.com/root-${++counter}`, {
        env: { STORAGE_EMULATOR_HOST: url, GOOGLE_CLOUD_PROJECT: "demo-hubcache" },
      }),
    createOnly: "ignored",
  });

  test("a cache dir on the emulator: cold publish (write-then-verify lock), warm hit without the hub", async () => {
    const hub = await startHubServer();
    try {
      hub.add("/fb/model/1", { archive: await tarGz(await savedModelDir(32 * 1024)) });
      const env = { STORAGE_EMULATOR_HOST: url, GOOGLE_CLOUD_PROJECT: "demo-hubcache" };
      const cacheDir = `gs://demo-hubcache.appspot.com/cache-${++counter}`;
      const handle = hub.handle("/fb/model/1");
      const location = await resolve(handle, { cacheDir, env });
      assert.equal(location, `${cacheDir}/${handleHash(handle)}`);
      assert.equal(await resolve(handle, { cacheDir, env, offline: true }), location);
      assert.equal(hub.downloads().length, 1);
    } finally {
      await hub.close();
    }
  });
});
