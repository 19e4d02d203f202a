import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { handleHash, redactUrl } from "hubcache";
import { entryPaths } from "../src/cache/layout.js";
import { CACHE_FLAG_OPTIONS } from "../src/cli/cache-flags.js";
import { RESOLVE_FLAGS } from "../src/cli/main.js";
import { COMMAND_FLAGS } from "../src/cli/model-commands.js";
import { type GcsFake, createGcsFake } from "./helpers/gcs-fake.js";
import { type HubServer, startHubServer } from "./helpers/hub-server.js";
import { readTree, savedModelDir, tarGz, tempDir, upscalerModelDir } from "./helpers/fixtures.js";
import { CLI, type Finished, runCli, startCli } from "./helpers/processes.js";

let hub: HubServer;
/** The GCS JSON API server that holds UNCOMPRESSED locations (resolve checks they exist). */
let gcs: GcsFake;
let gcsUrl: string;

before(async () => {
  hub = await startHubServer();
  gcs = createGcsFake({ buckets: ["tfhub-modules"] });
  gcsUrl = await gcs.listen();
  hub.add("/upscaler/default/1", { archive: await tarGz(await upscalerModelDir()) });
  hub.add("/google/savedmodel/1", { archive: await tarGz(await savedModelDir()) });
});
after(async () => {
  await Promise.all([hub.close(), gcs.close()]);
});

/** Run the real CLI in a child process (async, so the in-process hub can answer it). */
function cli(args: string[], env: Record<string, string> = {}): Promise<Finished> {
  return runCli(args, { env });
}

describe("hubcache resolve", () => {
  test("prints one absolute path per handle on stdout and nothing else", async () => {
    const cacheDir = await tempDir();
    const a = hub.handle("/upscaler/default/1");
    const b = hub.handle("/google/savedmodel/1");
    const run = await cli(["resolve", a, b], { TFHUB_CACHE_DIR: cacheDir });
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, `${entryPaths(cacheDir, a).dir}\n${entryPaths(cacheDir, b).dir}\n`);
    assert.equal(run.stderr, "");
  });

  test("TFHUB_DOWNLOAD_PROGRESS shows progress on stderr, never on stdout", async () => {
    const cacheDir = await tempDir();
    const handle = hub.handle("/google/savedmodel/1");
    const run = await cli(["resolve", handle], { TFHUB_CACHE_DIR: cacheDir, TFHUB_DOWNLOAD_PROGRESS: "1" });
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, `${entryPaths(cacheDir, handle).dir}\n`);
    assert.match(run.stderr, /^Downloaded .*savedmodel\/1: .* extracted$/m);
    const quietDir = await tempDir();
    const quiet = await cli(["resolve", "--quiet", handle], {
      TFHUB_CACHE_DIR: quietDir,
      TFHUB_DOWNLOAD_PROGRESS: "1",
    });
    assert.equal(quiet.stderr, "");
    // Quiet, not failed: it still resolved and printed its path.
    assert.equal(quiet.code, 0);
    assert.equal(quiet.stdout, `${entryPaths(quietDir, handle).dir}\n`);
  });

  test("a terminal gets a live progress bar on stderr", async (t) => {
    if (spawnSync("script", ["--version"]).status !== 0) {
      t.skip("util-linux `script` is needed to give the CLI a terminal");
      return;
    }
    const cacheDir = await tempDir();
    const handle = hub.handle("/google/savedmodel/1");
    // `script` runs the CLI on a pseudo-terminal: stdout and stderr both reach us through it.
    hub.throttleBytesPerSecond = 200_000; // slow enough for the bar to be drawn
    const child = spawn("script", ["-qec", `${process.execPath} ${CLI} resolve ${handle}`, "/dev/null"], {
      env: { ...process.env, TFHUB_CACHE_DIR: cacheDir, TFHUB_DOWNLOAD_PROGRESS: "" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let screen = "";
    child.stdout.on("data", (d: Buffer) => (screen += d.toString()));
    const code = await new Promise((r) => child.on("close", r));
    hub.throttleBytesPerSecond = 0;
    assert.equal(code, 0, screen);
    assert.match(screen, /[\u2588\u2591]+ +\d+% \| .* of .* \| .*savedmodel\/1/);
    assert.ok(screen.includes(entryPaths(cacheDir, handle).dir));
  });

  test("--tfhub_cache_dir is used when TFHUB_CACHE_DIR is empty, and loses to it otherwise", async () => {
    const envDir = await tempDir();
    const flagDir = await tempDir();
    const handle = hub.handle("/upscaler/default/1");
    const model = await readTree(await upscalerModelDir());
    const viaFlag = await cli(["resolve", "--tfhub_cache_dir", flagDir, handle], { TFHUB_CACHE_DIR: "" });
    assert.equal(viaFlag.code, 0, viaFlag.stderr);
    assert.equal(viaFlag.stdout, `${entryPaths(flagDir, handle).dir}\n`);
    assert.deepEqual(await readTree(entryPaths(flagDir, handle).dir), model);
    const viaEnv = await cli(["resolve", `--tfhub_cache_dir=${flagDir}`, handle], {
      TFHUB_CACHE_DIR: envDir,
    });
    assert.equal(viaEnv.code, 0, viaEnv.stderr);
    assert.equal(viaEnv.stdout, `${entryPaths(envDir, handle).dir}\n`);
    assert.deepEqual(await readTree(entryPaths(envDir, handle).dir), model);
    const viaOption = await cli(["resolve", "--cache-dir", flagDir, handle], { TFHUB_CACHE_DIR: envDir });
    assert.equal(viaOption.code, 0, viaOption.stderr);
    assert.equal(viaOption.stdout, `${entryPaths(flagDir, handle).dir}\n`);
    assert.deepEqual(await readTree(entryPaths(flagDir, handle).dir), model);
  });

  test("an error prints error[CODE] and a hint on stderr, nothing on stdout, and exits 1", async () => {
    const cacheDir = await tempDir();
    const run = await cli(["resolve", hub.handle("/upscaler/default/1"), hub.handle("/missing/1")], {
      TFHUB_CACHE_DIR: cacheDir,
    });
    assert.equal(run.code, 1);
    assert.equal(run.stdout, "");
    assert.match(run.stderr, /^error\[ERR_HUBCACHE_NOT_FOUND\]: .*\/missing\/1 was not found \(HTTP 404/m);
    assert.match(run.stderr, /^ {2}hint: /m);
  });

  test("--offline fails at once for an uncached handle, naming it", async () => {
    const cacheDir = await tempDir();
    const handle = hub.handle("/google/savedmodel/1");
    const before = hub.requests.length;
    const run = await cli(["resolve", "--offline", handle], { TFHUB_CACHE_DIR: cacheDir });
    assert.equal(run.code, 1);
    assert.match(
      run.stderr,
      new RegExp(
        `^error\\[ERR_HUBCACHE_OFFLINE\\]: Offline mode is on and ${handle.replace(/[.]/g, "\\.")} is not in the cache`,
        "m",
      ),
    );
    assert.equal(hub.requests.length, before);
    assert.equal(run.stdout, "");
  });

  test("--json reports each handle with its path or its error", async () => {
    const cacheDir = await tempDir();
    const good = hub.handle("/upscaler/default/1");
    const bad = hub.handle("/missing/2");
    const run = await cli(["resolve", "--json", good, bad], { TFHUB_CACHE_DIR: cacheDir });
    assert.equal(run.code, 1);
    const rows = JSON.parse(run.stdout) as {
      handle: string;
      path?: string;
      error?: { code: string; status: number };
    }[];
    assert.deepEqual(rows[0], { handle: good, path: entryPaths(cacheDir, good).dir });
    assert.equal(rows[1]?.handle, bad);
    assert.equal(rows[1]?.error?.code, "ERR_HUBCACHE_NOT_FOUND");
    assert.equal(rows[1]?.error?.status, 404);
  });

  test("--json never prints a handle's credentials or signed query (resolve and info)", async () => {
    const cacheDir = await tempDir();
    const signed = `${hub.handle("/upscaler/default/1")}?X-Amz-Credential=AKIDSECRET&X-Amz-Signature=sig5ecret`;
    const withUser = hub.handle("/missing/3").replace("http://", "http://alice:t0ken5ecret@");
    const run = await cli(["resolve", "--json", "--quiet", "--cache-dir", cacheDir, signed, withUser]);
    assert.equal(run.code, 1, run.stderr);
    const rows = JSON.parse(run.stdout) as { handle: string; path?: string; error?: { code: string } }[];
    assert.deepEqual(rows[0], { handle: redactUrl(signed), path: entryPaths(cacheDir, signed).dir });
    assert.equal(rows[1]?.handle, redactUrl(withUser));
    assert.equal(rows[1]?.error?.code, "ERR_HUBCACHE_NOT_FOUND");
    const info = await cli(["info", "--json", "--quiet", "--cache-dir", cacheDir, signed]);
    assert.equal(info.code, 0, info.stderr);
    assert.equal((JSON.parse(info.stdout) as { handle: string }[])[0]?.handle, redactUrl(signed));
    const text = await cli(["info", "--quiet", "--cache-dir", cacheDir, signed]);
    assert.match(text.stdout, /^handle {5}http:\/\/.*\?\[signed query redacted\]$/m);
    for (const output of [run, info, text]) {
      for (const secret of ["AKIDSECRET", "sig5ecret", "t0ken5ecret"]) {
        assert.ok(!`${output.stdout}${output.stderr}`.includes(secret), `${secret} leaked`);
      }
    }
  });

  test("a lower-case TFHUB_MODEL_LOAD_FORMAT is refused with a suggestion", async () => {
    const run = await cli(["resolve", hub.handle("/upscaler/default/1")], {
      TFHUB_CACHE_DIR: await tempDir(),
      TFHUB_MODEL_LOAD_FORMAT: "compressed",
    });
    assert.equal(run.code, 1);
    assert.match(run.stderr, /error\[ERR_HUBCACHE_INVALID_CONFIG\]: Invalid load format "compressed"/);
    assert.match(run.stderr, /Did you mean "COMPRESSED"/);
  });

  test("UNCOMPRESSED mode prints the location the host answers with 303", async () => {
    hub.add("/google/spice/2", {
      archive: Buffer.alloc(0),
      uncompressedLocation: "gs://tfhub-modules/google/spice/2/uncompressed",
    });
    const cacheDir = path.join(await tempDir(), "never-created");
    const storage = { STORAGE_EMULATOR_HOST: gcsUrl, GOOGLE_CLOUD_PROJECT: "test" };
    const missing = await cli(["resolve", "--load-format", "UNCOMPRESSED", hub.handle("/google/spice/2")], {
      TFHUB_CACHE_DIR: cacheDir,
      ...storage,
    });
    assert.equal(missing.code, 1, "the location must exist, as TF Hub's PathResolver checks");
    assert.match(
      missing.stderr,
      /error\[ERR_HUBCACHE_NOT_FOUND\]: gs:\/\/tfhub-modules\/google\/spice\/2\/uncompressed does not exist/,
    );
    gcs.putObject("tfhub-modules", "google/spice/2/uncompressed/saved_model.pb", "pb");
    const run = await cli(["resolve", "--load-format", "UNCOMPRESSED", hub.handle("/google/spice/2")], {
      TFHUB_CACHE_DIR: cacheDir,
      ...storage,
    });
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, "gs://tfhub-modules/google/spice/2/uncompressed\n");
    await assert.rejects(fs.stat(cacheDir), { code: "ENOENT" });
    const notHub = await cli(
      ["resolve", "--load-format", "UNCOMPRESSED", hub.handle("/upscaler/default/1")],
      {
        TFHUB_CACHE_DIR: cacheDir,
      },
    );
    assert.equal(notHub.code, 1);
    assert.match(notHub.stderr, /Expected 303 See other HTTP response but received code 200/);
  });
});

describe("every cache-using command reports lock waits", () => {
  test(
    "hubcache info, blocked by a live holder's lock, says whom it waits for, then takes over",
    { timeout: 90_000 },
    async () => {
      const cacheDir = await tempDir();
      const handle = hub.handle("/upscaler/default/1");
      const lock = entryPaths(cacheDir, handle).lock;
      // A holder on this host that is alive (this test process). It shows progress (it touches its
      // lock, as a holder's heartbeat does) until the CLI has said whom it waits for, and only then
      // stalls: so the report always comes before the takeover, however slow the machine.
      const holder = `${os.hostname()}.${process.pid}.${"ab".repeat(16)}`;
      await fs.writeFile(lock, holder);
      const waiting = new RegExp(`^waiting: .* is being downloaded by ${holder.replace(/\./g, "\\.")}`, "m");
      const run = startCli(["info", "--lock-timeout", "3", "--cache-dir", cacheDir, handle]);
      const exited = (): boolean => run.child.exitCode !== null || run.child.signalCode !== null;
      while (!waiting.test(run.stderr()) && !exited()) {
        const now = new Date();
        await fs.utimes(lock, now, now);
        await sleep(200);
      }
      const result = await run.done;
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stderr, waiting);
      assert.match(result.stderr, /^took over the download of .* \(no progress for 3 s\)/m);
    },
  );
});

describe("info and load take the cache flags resolve takes (one definition)", () => {
  test("each command's --help explains every cache flag", async () => {
    for (const command of ["resolve", "info", "load"]) {
      const run = await cli([command, "--help"]);
      assert.equal(run.code, 0);
      for (const name of Object.keys(CACHE_FLAG_OPTIONS)) {
        assert.ok(run.stdout.includes(`--${name}`), `${command} --help mentions --${name}`);
      }
    }
  });

  test("a malformed --lock-timeout or --max-extract-bytes is a usage error in each command", async () => {
    for (const command of ["resolve", "info", "load"]) {
      for (const flag of ["--lock-timeout", "--max-extract-bytes"]) {
        const run = await cli([command, flag, "soon", "https://example.com/m/1"]);
        assert.equal(run.code, 2, `${command} ${flag}`);
        assert.match(
          run.stderr,
          new RegExp(`^error\\[ERR_HUBCACHE_USAGE\\]: ${flag} needs a non-negative number`),
        );
      }
    }
  });

  test("--shared-cache: info publishes to the shared cache, load on another machine reads from it", async () => {
    const shared = `gs://tfhub-modules/shared-${process.pid}`;
    const storage = { STORAGE_EMULATOR_HOST: gcsUrl, GOOGLE_CLOUD_PROJECT: "test" };
    const handle = hub.handle("/upscaler/default/1");
    const before = hub.downloads().length;
    const info = await cli(
      ["info", "--quiet", "--cache-dir", await tempDir(), "--shared-cache", shared, handle],
      storage,
    );
    assert.equal(info.code, 0, info.stderr);
    const objects = [...(gcs.buckets.get("tfhub-modules")?.objects.keys() ?? [])];
    const hash = handleHash(handle);
    assert.ok(
      objects.includes(`shared-${process.pid}/${hash}.hubcache.json`),
      `published to the shared cache: ${objects.join(", ")}`,
    );
    // Every file of the model, with its bytes, under <prefix>/<hash>/.
    const published = new Map<string, Buffer>();
    for (const [name, object] of gcs.buckets.get("tfhub-modules")?.objects ?? []) {
      const inEntry = `shared-${process.pid}/${hash}/`;
      if (name.startsWith(inEntry)) published.set(name.slice(inEntry.length), object.data);
    }
    assert.deepEqual(published, await readTree(await upscalerModelDir()));
    const downloads = hub.downloads().length;
    assert.equal(downloads, before + 1);
    const load = await cli(
      [
        "load",
        "--backend",
        "cpu",
        "--no-run",
        "--cache-dir",
        await tempDir(),
        "--shared-cache",
        shared,
        handle,
      ],
      storage,
    );
    assert.equal(load.code, 0, load.stderr);
    assert.match(load.stdout, /^loaded {4}/);
    assert.equal(hub.downloads().length, downloads, "load read the shared cache, not the hub");
  });
});

describe("usage", () => {
  test("--help explains every flag and environment variable", async () => {
    const run = await cli(["resolve", "--help"]);
    assert.equal(run.code, 0);
    for (const word of [
      "--cache-dir",
      "--tfhub_cache_dir",
      "--load-format",
      "--format",
      "--offline",
      "--json",
      "--quiet",
      "--lock-timeout",
      "--max-extract-bytes",
      "TFHUB_CACHE_DIR",
      "TFHUB_MODEL_LOAD_FORMAT",
      "TFHUB_DOWNLOAD_PROGRESS",
      "HUBCACHE_OFFLINE",
      "HUBCACHE_LOCK_TIMEOUT",
      "HUBCACHE_MAX_EXTRACT_BYTES",
      "--shared-cache",
      "HUBCACHE_SHARED_CACHE",
      "AWS_ENDPOINT_URL_S3",
      "STORAGE_EMULATOR_HOST",
      "GOOGLE_APPLICATION_CREDENTIALS",
    ]) {
      assert.ok(run.stdout.includes(word), `help mentions ${word}`);
    }
    const top = await cli(["--help"]);
    assert.equal(top.code, 0);
    assert.match(top.stdout, /hubcache resolve HANDLE/);
  });

  test("bad usage exits 2 with a coded message", async () => {
    for (const args of [
      ["resolve"],
      ["frobnicate"],
      ["resolve", "--format", "onnx", "x"],
      ["resolve", "--nope", "x"],
    ]) {
      const run = await cli(args);
      assert.equal(run.code, 2, args.join(" "));
      assert.match(run.stderr, /^error\[ERR_HUBCACHE_USAGE\]: /);
      assert.equal(run.stdout, "");
    }
  });

  test("a usage error points at the command's --help, which lists every flag the command takes", async () => {
    const flags = { resolve: RESOLVE_FLAGS, info: COMMAND_FLAGS.info, load: COMMAND_FLAGS.load };
    for (const [command, names] of Object.entries(flags)) {
      const help = await cli([command, "--help"]);
      assert.equal(help.code, 0);
      for (const name of names) {
        assert.ok(help.stdout.includes(`--${name}`), `${command} --help lists --${name}`);
      }
      for (const args of [[command, "--nope", "x"], [command, "--cache-dir"], [command]]) {
        const run = await cli(args);
        assert.equal(run.code, 2, args.join(" "));
        assert.match(
          run.stderr,
          new RegExp(`^ {2}hint: run "hubcache ${command} --help" for its flags`, "m"),
        );
      }
    }
    const foreign = await cli(["info", "--backend", "cpu", "x"]);
    assert.equal(foreign.code, 2);
    assert.match(foreign.stderr, /--backend is a flag of "hubcache load", not of "hubcache info"/);
    const unknown = await cli(["frobnicate"]);
    assert.match(unknown.stderr, /hint: run "hubcache --help" for the commands/);
  });
});
