// After `tsc` has written dist/ (JavaScript, declarations, source maps), replace the two entry
// points with bundles of hubcache's own modules: dist/index.js (the library) and dist/cli/main.js
// (the CLI), which share one chunk of common code. Loading a few files instead of ~60 saves about
// 35 ms of start-up, most of a cold CLI run's overhead besides Node itself (see README).
// Dependencies (tar, undici, cli-progress, the cloud SDKs, TF.js) stay external: npm installs,
// dedupes and updates them as usual. The other modules' JavaScript is then removed (the bundles hold
// it; nothing imports it), so the package ships one copy of each module; declarations stay.
import { promises as fs } from "node:fs";
import path from "node:path";
import { build } from "esbuild";

const entries = ["dist/index.js", "dist/cli/main.js"];
// One build with code splitting: what both entry points use (nearly all of the library) lands once,
// in a shared chunk next to dist/index.js, instead of a copy inside each bundle.
await build({
  entryPoints: entries,
  outdir: "dist",
  outbase: "dist",
  allowOverwrite: true,
  bundle: true,
  splitting: true,
  chunkNames: "chunks/[name]-[hash]",
  packages: "external",
  platform: "node",
  format: "esm",
  target: "node20",
  sourcemap: true,
  metafile: true,
  logLevel: "warning",
}).then(async (result) => {
  await fs.writeFile("dist/.bundles.json", JSON.stringify(Object.keys(result.metafile.outputs)));
});

const outputs = JSON.parse(await fs.readFile("dist/.bundles.json", "utf8"));
await fs.rm("dist/.bundles.json");
const keep = new Set(outputs.map((file) => path.resolve(file)));
for (const file of await fs.readdir("dist", { recursive: true })) {
  const full = path.resolve("dist", file);
  if ((full.endsWith(".js") || full.endsWith(".js.map")) && !keep.has(full)) await fs.rm(full);
}
