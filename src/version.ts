import { readFileSync } from "node:fs";

/** hubcache's own version, from its package.json (found from dist/ or dist/cli/, bundled or not). */
function readVersion(): string {
  for (const relative of ["../package.json", "../../package.json"]) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(relative, import.meta.url), "utf8")) as {
        name?: unknown;
        version?: unknown;
      };
      if (pkg.name === "hubcache" && typeof pkg.version === "string") return pkg.version;
    } catch {
      // not this one
    }
  }
  return "0.0.0";
}

export const VERSION: string = readVersion();

export const USER_AGENT = `hubcache/${VERSION} node/${process.versions.node}`;
