import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import { NotADirectoryError, makeDirs } from "../src/make-dirs.js";
import { tempDir } from "./helpers/fixtures.js";

describe("makeDirs (mkdir -p that always ends)", () => {
  it("makes missing parents, and succeeds on an existing directory", async () => {
    const root = await tempDir("make-dirs-");
    const deep = path.join(root, "a", "b", "c");
    await makeDirs(deep);
    assert.ok((await fs.stat(deep)).isDirectory());
    await makeDirs(deep);
  });

  it("fails, and does not spin, under /proc (Node 20's recursive mkdir loops forever there)", async () => {
    const error = await makeDirs("/proc/hubcache-x/y").then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(error instanceof Error);
    assert.equal((error as NodeJS.ErrnoException).code, "ENOENT");
  });

  it("names the file in the way: the directory itself, or a parent", async () => {
    const root = await tempDir("make-dirs-");
    const file = path.join(root, "cache");
    await fs.writeFile(file, "not a folder");
    await assert.rejects(makeDirs(file), (e: unknown) => e instanceof NotADirectoryError && e.path === file);
    await assert.rejects(
      makeDirs(path.join(file, "sub", "dir")),
      (e: unknown) => e instanceof NotADirectoryError && e.path === file,
    );
  });
});
