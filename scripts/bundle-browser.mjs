// hubcache/browser: src/browser/index.ts as one self-contained, minified ES module, dist/browser.js,
// with dist/browser.d.ts pointing at the declarations tsc wrote (dist/browser/index.d.ts). Runs
// after scripts/bundle.mjs (which removes every unbundled .js in dist/). The build fails if the
// bundle would import anything: no bare imports (TF.js stays the app's own), no node: modules.
import { promises as fs } from "node:fs";
import { build } from "esbuild";

const refuseImports = {
  name: "refuse-imports",
  setup(b) {
    b.onResolve({ filter: /^[^./]/ }, (args) => ({
      errors: [{ text: `the browser build may not import "${args.path}" (from ${args.importer})` }],
    }));
  },
};

const result = await build({
  entryPoints: ["src/browser/index.ts"],
  outfile: "dist/browser.js",
  bundle: true,
  format: "esm",
  platform: "browser",
  target: ["chrome105", "firefox110", "safari16.4"],
  minify: true,
  sourcemap: true,
  legalComments: "none",
  metafile: true,
  logLevel: "warning",
  plugins: [refuseImports],
});
await fs.writeFile("dist/browser.d.ts", 'export * from "./browser/index.js";\n');
const bytes = result.metafile.outputs["dist/browser.js"]?.bytes ?? 0;
if (process.env.HUBCACHE_BUILD_QUIET !== "1") console.log(`dist/browser.js: ${bytes} bytes`);
