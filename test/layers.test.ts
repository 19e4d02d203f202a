import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";

/**
 * The layers of docs/architecture.md, lowest first. An import in src/ may point to a lower layer,
 * or inside its own folder (or file); within the base and the parsing layer, sideways too.
 */
const LAYERS: { units: string[]; sideways?: boolean }[] = [
  {
    units: ["errors", "events", "redact", "uid", "make-dirs", "settings-table", "version", "units"],
    sideways: true,
  },
  { units: ["config", "handle"], sideways: true },
  { units: ["net/"] },
  { units: ["storage/", "extract/"] },
  { units: ["settings", "cache/"] },
  { units: ["sources/"] },
  { units: ["resolve"] },
  { units: ["load/", "manage/"] },
  { units: ["serve/"] },
  { units: ["index", "browser/"] },
  { units: ["cli/"] },
];
/** The browser build imports only what runs in a page: errors, redaction and the model.json reader. */
const BROWSER_MAY_IMPORT = new Set(["errors", "redact", "load/model-json.ts"]);

/** Pairs the layers would allow that docs/architecture.md rules out: the cache runs a Producer it is given. */
const FORBIDDEN = new Set(["cache/ -> extract/", "cache/ -> net/"]);

const SRC = path.resolve("src");

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(full);
    return entry.name.endsWith(".ts") ? [full] : [];
  });
}

/** "cache/" for a file in src/cache/, "settings" for src/settings.ts. */
function unitOf(file: string): string {
  const relative = path.relative(SRC, file);
  const [first, ...rest] = relative.split(path.sep);
  return rest.length > 0 ? `${first ?? ""}/` : relative.replace(/\.ts$/, "");
}

function layerOf(unit: string): number {
  const index = LAYERS.findIndex((layer) => layer.units.includes(unit));
  assert.notEqual(
    index,
    -1,
    `${unit} is in no layer of test/layers.test.ts (add it, and to docs/architecture.md)`,
  );
  return index;
}

/** Every relative module a file imports: static, re-exported, type-only and dynamic. */
export function relativeImports(source: string): string[] {
  const found = source.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)"(\.{1,2}\/[^"]+)"/gm);
  return [...found].map((match) => match[1] ?? "");
}

/** The imports of src/ that run up a layer (or sideways across it), one line each. */
function violations(): string[] {
  const found: string[] = [];
  const files = sourceFiles(SRC);
  assert.ok(files.length > 50, `only ${files.length} files under ${SRC}: run from the repository root`);
  for (const file of files) {
    const from = unitOf(file);
    const fromLayer = layerOf(from);
    for (const spec of relativeImports(readFileSync(file, "utf8"))) {
      const target = path.resolve(path.dirname(file), spec.replace(/\.js$/, ".ts"));
      const to = unitOf(target);
      const line = `${path.relative(SRC, file)} imports ${spec}`;
      if (from === "browser/" && to !== "browser/") {
        const name = to.endsWith("/") ? path.relative(SRC, target) : to;
        if (!BROWSER_MAY_IMPORT.has(name)) found.push(`${line} (the browser build)`);
        continue;
      }
      if (to === from) continue;
      if (FORBIDDEN.has(`${from} -> ${to}`)) {
        found.push(`${line} (${from} never imports ${to})`);
        continue;
      }
      const toLayer = layerOf(to);
      if (toLayer < fromLayer) continue;
      if (toLayer === fromLayer && LAYERS[fromLayer]?.sideways) continue;
      found.push(`${line} (${toLayer > fromLayer ? "up a layer" : "sideways"})`);
    }
  }
  return found;
}

test("every import in src/ points down a layer of docs/architecture.md", () => {
  assert.deepEqual(violations(), []);
});

test("the import reader sees every form of import (so the layer check can fail)", () => {
  const source = [
    'import { a } from "../serve/route.js";',
    'import type { B } from "./b.js";',
    'export { c } from "../c.js";',
    'import "./side-effect.js";',
    'const d = await import("../d.js");',
    'import x from "node:fs";',
    "import {",
    "  e,",
    "  type F,",
    '} from "../e.js";',
  ].join("\n");
  assert.deepEqual(relativeImports(source), [
    "../serve/route.js",
    "./b.js",
    "../c.js",
    "./side-effect.js",
    "../d.js",
    "../e.js",
  ]);
});
