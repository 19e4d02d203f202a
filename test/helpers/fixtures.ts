/**
 * Real models from npm packages, laid out the way a hub serves them, and archives built from
 * them at test time (no opaque binaries in the repo).
 */
import { randomBytes } from "node:crypto";
import { existsSync, promises as fs } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { buffer } from "node:stream/consumers";
import * as tar from "tar";

const require = createRequire(import.meta.url);

/** A package's folder, found through node_modules without going through its "exports". */
export function packageDir(name: string): string {
  for (const base of require.resolve.paths(name) ?? []) {
    const candidate = path.join(base, name);
    if (existsSync(path.join(candidate, "package.json"))) return candidate;
  }
  throw new Error(`${name} is not installed; run npm install`);
}

export async function tempDir(prefix = "hubcache-test-"): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), prefix));
}

/** movenet-lightning (graph model) from @vladmandic/human, as `model.json` + `group1-shard1of1.bin`. */
export async function movenetModelDir(into?: string): Promise<string> {
  const dir = into ?? (await tempDir("movenet-"));
  const source = path.join(packageDir("@vladmandic/human"), "models");
  const json = JSON.parse(await fs.readFile(path.join(source, "movenet-lightning.json"), "utf8")) as {
    weightsManifest: { paths: string[] }[];
  };
  for (const group of json.weightsManifest) group.paths = ["group1-shard1of1.bin"];
  await fs.writeFile(path.join(dir, "model.json"), JSON.stringify(json));
  await fs.copyFile(path.join(source, "movenet-lightning.bin"), path.join(dir, "group1-shard1of1.bin"));
  return dir;
}

/** The @upscalerjs/default-model layers model, as shipped. */
export async function upscalerModelDir(into?: string): Promise<string> {
  const dir = into ?? (await tempDir("upscaler-"));
  const source = path.join(packageDir("@upscalerjs/default-model"), "models");
  for (const name of ["model.json", "group1-shard1of1.bin"]) {
    await fs.copyFile(path.join(source, name), path.join(dir, name));
  }
  return dir;
}

/** A SavedModel-shaped tree with nested folders and float32 "weights" of about `weightBytes`. */
export async function savedModelDir(weightBytes = 64 * 1024, into?: string): Promise<string> {
  const dir = into ?? (await tempDir("savedmodel-"));
  await fs.mkdir(path.join(dir, "variables"), { recursive: true });
  await fs.mkdir(path.join(dir, "assets", "nested", "deeper"), { recursive: true });
  await fs.writeFile(path.join(dir, "saved_model.pb"), randomBytes(4096));
  await fs.writeFile(path.join(dir, "fingerprint.pb"), randomBytes(64));
  await fs.writeFile(path.join(dir, "variables", "variables.index"), randomBytes(1024));
  await fs.writeFile(
    path.join(dir, "variables", "variables.data-00000-of-00001"),
    realisticWeights(weightBytes),
  );
  await fs.writeFile(path.join(dir, "assets", "vocab.txt"), "hello\nworld\n");
  await fs.writeFile(path.join(dir, "assets", "nested", "deeper", "labels.txt"), "a\nb\nc\n");
  return dir;
}

/**
 * float32 "weights" that compress like trained ones (about 43 % with gzip -6):
 * 0.05·sin(i/(997+13k))·cos(i/65537) + N(0, 2e-4), quantised to 2^-16 steps.
 */
export function realisticWeights(bytes: number, k = 0): Buffer {
  const count = Math.floor(bytes / 4);
  const out = Buffer.alloc(count * 4);
  let seed = 12345 + k;
  const random = (): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) & 0x7fffffff;
    return seed / 0x7fffffff;
  };
  const period = 997 + 13 * k;
  for (let i = 0; i < count; i++) {
    const u = Math.max(random(), 1e-9);
    const noise = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random()) * 2e-4;
    const value = 0.05 * Math.sin(i / period) * Math.cos(i / 65537) + noise;
    out.writeFloatLE(Math.round(value * 65536) / 65536, i * 4);
  }
  return out;
}

/** `tar -cz --owner=0 --group=0 -C dir .`, the way TF Hub's docs build archives. */
export async function tarGz(dir: string, options: { gzip?: boolean } = {}): Promise<Buffer> {
  const stream = tar.c({ cwd: dir, gzip: options.gzip ?? true, portable: true }, ["."]);
  return buffer(stream);
}

/** Every regular file below `root` with its bytes, for exact comparisons. */
export async function readTree(root: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  const walk = async (dir: string, prefix: string): Promise<void> => {
    for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
      const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
      if (entry.isDirectory()) await walk(path.join(dir, entry.name), rel);
      else out.set(rel, await fs.readFile(path.join(dir, entry.name)));
    }
  };
  await walk(root, "");
  return out;
}

/** What `promise` rejects with (undefined when it resolves): the fields of a coded error, to assert. */
export async function rejectionOf(
  promise: Promise<unknown>,
): Promise<{ code?: string; message?: string; hint?: string } | undefined> {
  try {
    await promise;
    return undefined;
  } catch (error) {
    return error as { code?: string; message?: string; hint?: string };
  }
}
