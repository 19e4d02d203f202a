/**
 * npm run demo: no internet needed. Serves a real model (movenet-lightning, from the
 * @vladmandic/human npm package) from a local host that speaks TF Hub's protocol, then runs
 * `hubcache resolve` on it cold and warm, and shows what happened.
 */
import { spawn } from "node:child_process";
import { promises as fs } from "node:fs";
import path from "node:path";
import { handleHash, resolve } from "hubcache";
import { movenetModelDir, readTree, tarGz, tempDir } from "../test/helpers/fixtures.js";
import { startHubServer } from "../test/helpers/hub-server.js";

const BIN = path.resolve("bin/hubcache.js");
const MODEL_PATH = "/google/tfjs-model/movenet/singlepose/lightning/4";

function size(bytes: number): string {
  return bytes >= 1 << 20 ? `${(bytes / (1 << 20)).toFixed(2)} MiB` : `${(bytes / 1024).toFixed(1)} KiB`;
}

function runCli(
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ stdout: string; ms: number; code: number | null }> {
  return new Promise((done) => {
    const started = performance.now();
    const child = spawn(process.execPath, [BIN, ...args], { env, stdio: ["ignore", "pipe", "inherit"] });
    let stdout = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.on("close", (code) => done({ stdout, ms: performance.now() - started, code }));
  });
}

async function main(): Promise<void> {
  console.log("hubcache demo: a TF Hub model URL becomes a verified local folder, once.\n");
  const modelDir = await movenetModelDir();
  const archive = await tarGz(modelDir);
  const hub = await startHubServer();
  hub.add(MODEL_PATH, { archive });
  const handle = hub.handle(MODEL_PATH);
  const cacheDir = await tempDir("hubcache-demo-");
  const env = { ...process.env, TFHUB_CACHE_DIR: cacheDir, TFHUB_DOWNLOAD_PROGRESS: "1" };
  console.log(`model      movenet-lightning (TF.js graph model) from node_modules/@vladmandic/human`);
  console.log(`host       ${hub.origin} (local; answers like tfhub.dev: 302 to a signed storage URL)`);
  console.log(`archive    ${size(archive.length)} .tar.gz`);
  console.log(`cache dir  ${cacheDir} (TFHUB_CACHE_DIR)\n`);

  try {
    console.log(`$ hubcache resolve ${handle}    # cold`);
    const cold = await runCli(["resolve", handle], env);
    if (cold.code !== 0) throw new Error(`hubcache resolve exited ${cold.code}`);
    const coldRequests = hub.requests.map(
      (r) => `${r.method} ${r.url.replace(/X-Goog-Signature=[^&]+/, "X-Goog-Signature=…")}`,
    );
    console.log(cold.stdout.trim());
    console.log(
      `  -> ${cold.ms.toFixed(0)} ms (whole command), ${coldRequests.length} requests at the host:`,
    );
    for (const line of coldRequests) console.log(`     ${line}`);

    const before = hub.requests.length;
    console.log(`\n$ hubcache resolve ${handle}    # warm`);
    const warm = await runCli(["resolve", handle], env);
    console.log(warm.stdout.trim());
    console.log(
      `  -> ${warm.ms.toFixed(0)} ms (whole command, mostly Node start-up), ${hub.requests.length - before} requests`,
    );

    const calls = 2000;
    const started = performance.now();
    for (let i = 0; i < calls; i++) await resolve(handle, { cacheDir });
    const perCall = ((performance.now() - started) * 1000) / calls;
    console.log(
      `  -> in-process: ${perCall.toFixed(0)} µs per resolve() of a cached model, ${hub.requests.length - before} requests`,
    );

    const hash = handleHash(handle); // TF Hub's entry name: the sha1 of the handle
    const paths = {
      hash,
      dir: path.join(cacheDir, hash),
      descriptor: path.join(cacheDir, `${hash}.descriptor.txt`),
    };
    console.log(`\nWhat is in the cache (the layout Python tensorflow_hub uses, so both can share it):`);
    for (const name of (await fs.readdir(cacheDir)).sort()) {
      const stat = await fs.stat(path.join(cacheDir, name));
      console.log(`  ${name}${stat.isDirectory() ? "/" : `  (${size(stat.size)})`}`);
    }
    for (const [file, bytes] of await readTree(paths.dir)) {
      console.log(`  ${paths.hash}/${file}  (${size(bytes.length)})`);
    }
    console.log(
      `\n${paths.hash}.descriptor.txt:\n  ${(await fs.readFile(paths.descriptor, "utf8")).replaceAll("\n", "\n  ")}`,
    );
    const original = await readTree(modelDir);
    const cached = await readTree(paths.dir);
    const same =
      original.size === cached.size &&
      [...cached].every(([file, bytes]) => original.get(file)?.equals(bytes));
    console.log(`\nCached files identical to the served model: ${same ? "yes" : "NO"}`);
  } finally {
    await hub.close();
    await fs.rm(cacheDir, { recursive: true, force: true });
    await fs.rm(modelDir, { recursive: true, force: true });
  }
  console.log(`\nDone; the demo's cache dir was removed. Try it yourself: npx hubcache resolve --help`);
}

await main();
