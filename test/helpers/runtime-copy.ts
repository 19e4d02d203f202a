/**
 * A copy of the built CLI with only its production dependencies, in the temp dir, so a child
 * process running as an unprivileged user can execute it wherever the repository itself lives
 * (CI's clone may sit below a folder only root can enter).
 */
import { execFileSync } from "node:child_process";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";

let staged: Promise<string> | undefined;

/** Returns the path of `bin/hubcache.js` inside a world-readable copy of the package. */
export function worldReadableCli(): Promise<string> {
  staged ??= stage();
  return staged;
}

async function stage(): Promise<string> {
  const root = process.cwd();
  const target = await fs.mkdtemp(path.join(os.tmpdir(), "hubcache-runtime-"));
  for (const item of ["package.json", "bin", "dist"]) {
    await fs.cp(path.join(root, item), path.join(target, item), { recursive: true });
  }
  const deps = execFileSync("npm", ["ls", "--omit=dev", "--all", "--parseable"], {
    cwd: root,
    encoding: "utf8",
  })
    .split("\n")
    .filter((line) => line.startsWith(path.join(root, "node_modules")));
  for (const dep of deps) {
    await fs.cp(dep, path.join(target, path.relative(root, dep)), { recursive: true });
  }
  execFileSync("chmod", ["-R", "a+rX", target]);
  await fs.chmod(target, 0o755);
  return path.join(target, "bin", "hubcache.js");
}
