/**
 * Missing TensorFlow.js peers, for real: hubcache's built package is installed into a temporary
 * project that lacks some TF.js packages, and a child process loads a model from there. Node's
 * own resolution fails, exactly as it would for a user.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, promises as fs } from "node:fs";
import path from "node:path";
import { before, test } from "node:test";
import { movenetModelDir, tempDir, upscalerModelDir } from "./helpers/fixtures.js";

/** Per-test limit: a hang fails the test instead of the run (generous: the machine is shared). */
const LIMIT = { timeout: 180_000 };

const ROOT = path.resolve(".");
const MODULES = path.join(ROOT, "node_modules");
let graphDir: string;
let layersDir: string;

before(async () => {
  graphDir = await movenetModelDir();
  layersDir = await upscalerModelDir();
});

/** A project with hubcache installed (a copy of the build, so resolution starts there) and `peers`. */
async function project(peers: { link?: string[]; copyConverterAlone?: boolean }): Promise<string> {
  const dir = await tempDir("peers-");
  // Resolution walks up from the project: no ancestor may provide TF.js.
  for (let up = dir; up !== path.dirname(up); up = path.dirname(up)) {
    assert.ok(
      !existsSync(path.join(path.dirname(up), "node_modules", "@tensorflow")),
      `TF.js is installed above ${dir}; this test needs a clean temp dir`,
    );
  }
  const modules = path.join(dir, "node_modules");
  const own = path.join(modules, "hubcache");
  await fs.mkdir(own, { recursive: true });
  await fs.copyFile(path.join(ROOT, "package.json"), path.join(own, "package.json"));
  await fs.cp(path.join(ROOT, "dist"), path.join(own, "dist"), { recursive: true });
  const pkg = JSON.parse(await fs.readFile(path.join(ROOT, "package.json"), "utf8")) as {
    dependencies: Record<string, string>;
  };
  for (const name of [...Object.keys(pkg.dependencies), ...(peers.link ?? [])]) {
    await fs.mkdir(path.dirname(path.join(modules, name)), { recursive: true });
    await fs.symlink(path.join(MODULES, name), path.join(modules, name), "dir");
  }
  if (peers.copyConverterAlone) {
    // tfjs-converter present, but its own dependency tfjs-core is not.
    const from = path.join(MODULES, "@tensorflow/tfjs-converter");
    const to = path.join(modules, "@tensorflow/tfjs-converter");
    await fs.mkdir(path.join(to, "dist"), { recursive: true });
    await fs.copyFile(path.join(from, "package.json"), path.join(to, "package.json"));
    await fs.copyFile(
      path.join(from, "dist/tf-converter.node.js"),
      path.join(to, "dist/tf-converter.node.js"),
    );
  }
  return dir;
}

interface Outcome {
  ok: boolean;
  code?: string;
  message?: string;
  hint?: string;
}

function loadIn(projectDir: string, modelDir: string): Outcome {
  const script = `import { load } from "hubcache";
try { await load(${JSON.stringify(modelDir)}); console.log(JSON.stringify({ ok: true })); }
catch (e) { console.log(JSON.stringify({ ok: false, code: e.code, message: e.message, hint: e.hint })); }`;
  const env = { ...process.env };
  delete env.NODE_PATH;
  delete env.NODE_OPTIONS;
  const child = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
    cwd: projectDir,
    env,
    encoding: "utf8",
    timeout: 120_000,
  });
  assert.equal(child.status, 0, child.stderr);
  return JSON.parse(child.stdout.trim().split("\n").at(-1) ?? "{}") as Outcome;
}

test("no TF.js at all: ERR_HUBCACHE_MISSING_DEPENDENCY with the exact install command", LIMIT, async () => {
  const dir = await project({});
  const graph = loadIn(dir, graphDir);
  assert.equal(graph.code, "ERR_HUBCACHE_MISSING_DEPENDENCY", graph.message);
  assert.match(graph.message ?? "", /@tensorflow\/tfjs-core and @tensorflow\/tfjs-converter/);
  assert.match(
    graph.hint ?? "",
    /npm install @tensorflow\/tfjs-core @tensorflow\/tfjs-converter @tensorflow\/tfjs-backend-cpu/,
  );
  const keras = loadIn(dir, layersDir);
  assert.equal(keras.code, "ERR_HUBCACHE_MISSING_DEPENDENCY");
  assert.match(
    keras.hint ?? "",
    /npm install @tensorflow\/tfjs-core @tensorflow\/tfjs-layers @tensorflow\/tfjs-backend-cpu/,
  );
});

test("tfjs-core but no converter: only the converter is named", LIMIT, async () => {
  const dir = await project({ link: ["@tensorflow/tfjs-core", "@tensorflow/tfjs-backend-cpu"] });
  const outcome = loadIn(dir, graphDir);
  assert.equal(outcome.code, "ERR_HUBCACHE_MISSING_DEPENDENCY");
  assert.match(outcome.hint ?? "", /npm install @tensorflow\/tfjs-converter\.$/);
  // The layers model needs tfjs-layers, also missing here.
  assert.match(loadIn(dir, layersDir).hint ?? "", /npm install @tensorflow\/tfjs-layers\.$/);
});

test(
  "tfjs-converter installed without its tfjs-core (a CommonJS require fails inside it)",
  LIMIT,
  async () => {
    const dir = await project({ copyConverterAlone: true });
    const outcome = loadIn(dir, graphDir);
    assert.equal(outcome.code, "ERR_HUBCACHE_MISSING_DEPENDENCY", outcome.message);
    assert.match(outcome.hint ?? "", /npm install @tensorflow\/tfjs-core @tensorflow\/tfjs-backend-cpu/);
    assert.doesNotMatch(outcome.hint ?? "", /tfjs-converter/);
  },
);

test(
  "TF.js without any backend: ERR_HUBCACHE_NO_BACKEND says which to install and import",
  LIMIT,
  async () => {
    const dir = await project({ link: ["@tensorflow/tfjs-core", "@tensorflow/tfjs-converter"] });
    const outcome = loadIn(dir, graphDir);
    assert.equal(outcome.code, "ERR_HUBCACHE_NO_BACKEND", outcome.message);
    assert.match(outcome.hint ?? "", /npm install @tensorflow\/tfjs-backend-cpu/);
  },
);

test("with a backend installed but not imported, the hint names it", LIMIT, async () => {
  const dir = await project({
    link: ["@tensorflow/tfjs-core", "@tensorflow/tfjs-converter", "@tensorflow/tfjs-backend-wasm"],
  });
  const outcome = loadIn(dir, graphDir);
  assert.equal(outcome.code, "ERR_HUBCACHE_NO_BACKEND");
  assert.match(outcome.hint ?? "", /import "@tensorflow\/tfjs-backend-wasm" \(installed\)/);
});
