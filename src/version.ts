import { readFileSync } from "node:fs";

/** hubcache's own version, from package.json. */
export const VERSION: string = (
  JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }
).version;

export const USER_AGENT = `hubcache/${VERSION} node/${process.versions.node}`;
