// After `tsc` has written dist/ (JavaScript, declarations, source maps), replace the two entry
// points with single-file bundles of hubcache's own modules: dist/index.js (the library) and
// dist/cli/main.js (the CLI). Loading one file instead of ~60 saves about 35 ms of start-up, which
// is most of a cold CLI run's overhead besides Node itself (see README, "Performance").
// Dependencies (tar, undici, cli-progress, the cloud SDKs, TF.js) stay external: npm installs,
// dedupes and updates them as usual. The other dist/ files stay for source maps and declarations.
import { build } from "esbuild";

for (const entry of ["dist/index.js", "dist/cli/main.js"]) {
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
