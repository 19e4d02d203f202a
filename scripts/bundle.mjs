// After `tsc` has written dist/ (JavaScript, declarations, source maps), replace the two entry
// points with single-file bundles of hubcache's own modules: dist/index.js (the library) and
// dist/cli/main.js (the CLI). Loading one file instead of ~60 saves about 35 ms of start-up, which
// is most of a cold CLI run's overhead besides Node itself (see README, "Performance").
// Dependencies (tar, undici, cli-progress, the cloud SDKs, TF.js) stay external: npm installs,
// dedupes and updates them as usual. The other modules' JavaScript is then removed (the bundles hold
// it; nothing imports it), so the package ships one copy of each module; declarations stay.
import { promises as fs } from "node:fs";
import path from "node:path";
import { build } from "esbuild";

const entries = ["dist/index.js", "dist/cli/main.js"];
for (const entry of entries) {
  await build({
    entryPoints: [entry],
    outfile: entry,
    allowOverwrite: true,
    bundle: true,
    packages: "external",
    platform: "node",
    format: "esm",
    target: "node20",
    sourcemap: true,
    logLevel: "warning",
  });
}

const keep = new Set(entries.flatMap((entry) => [path.resolve(entry), path.resolve(`${entry}.map`)]));
for (const file of await fs.readdir("dist", { recursive: true })) {
  const full = path.resolve("dist", file);
  if ((full.endsWith(".js") || full.endsWith(".js.map")) && !keep.has(full)) await fs.rm(full);
}
