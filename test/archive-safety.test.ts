// Hostile archives: each test is named after the attack. Every one must be refused as a whole
// (ERR_HUBCACHE_UNSAFE_ARCHIVE), leave the cache dir empty and write nothing outside it.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import path from "node:path";
import { Readable } from "node:stream";
import zlib from "node:zlib";
import { after, before, describe, it } from "node:test";
import * as tar from "tar";
import { extractArchive } from "../src/extract/extract.js";
import { resolve } from "../src/resolve.js";
import { type EntrySpec, benignEntries, gzip, paxPath, tarEntry, tarOf } from "./helpers/archives.js";
import { readTree, savedModelDir, tarGz, tempDir } from "./helpers/fixtures.js";
import { type FlakyHost, startFlakyHost } from "./helpers/flaky-host.js";
import { until } from "./helpers/wait.js";
import { type Sandbox, assertNoTrace, expectCode, fsIdle, listAll, makeSandbox } from "./helpers/sandbox.js";

let host: FlakyHost;
before(async () => {
  host = await startFlakyHost();
});
after(() => host.close());

let routeCount = 0;
/** Serve `archive`, resolve it into a fresh sandbox, expect `code`, and check that no trace is left. */
async function refuse(
  archive: Buffer | ((sandbox: Sandbox) => Buffer),
  code = "ERR_HUBCACHE_UNSAFE_ARCHIVE",
): Promise<{ message: string; sandbox: Sandbox }> {
  const sandbox = await makeSandbox();
  try {
    const route = `/attack/${++routeCount}`;
    host.route(route, [{ body: typeof archive === "function" ? archive(sandbox) : archive }]);
    const error = await expectCode(
      resolve(host.url(route), { cacheDir: sandbox.cacheDir, retries: 0 }),
      code,
    );
    await assertNoTrace(sandbox);
    return { message: error.message, sandbox };
  } finally {
    await sandbox.cleanup();
  }
}

/** From the temp dir <root>/cache/<hash>.<uid>.tmp, "../../outside" is the sandbox's outside/. */
const UP_TO_ROOT = "../..";

describe("archive safety", () => {
  it("path traversal with '..' (../../outside/pwned) is refused", async () => {
    const { message } = await refuse(
      tarOf([...benignEntries(), { path: `${UP_TO_ROOT}/outside/pwned`, content: "pwned" }]),
    );
    assert.match(message, /\.\./);
  });

  it("'..' inside a folder path (variables/../../../outside/pwned) is refused", async () => {
    await refuse(tarOf([{ path: `variables/../${UP_TO_ROOT}/outside/pwned`, content: "pwned" }]));
  });

  it("'..' smuggled in a pax extended header path is refused", async () => {
    const { message } = await refuse(
      tarOf([
        ...benignEntries(),
        paxPath(`${UP_TO_ROOT}/outside/pwned`),
        tarEntry({ path: "innocent.txt", content: "pwned" }),
      ]),
    );
    // The pax path, not the header's innocent name, is what was refused.
    assert.match(message, /a path with "\.\." \(\.\.\/\.\.\/outside\/pwned\)/);
  });

  it("an absolute path aimed outside the cache is refused (not re-rooted)", async () => {
    let target = "";
    const { message } = await refuse((sandbox) => {
      target = path.join(sandbox.outside, "pwned");
      return tarOf([...benignEntries(), { path: target, content: "pwned" }]);
    });
    assert.ok(message.includes(`an absolute path (${target})`), message);
  });

  it("a Windows drive path (C:/pwned) is refused", async () => {
    const { message } = await refuse(tarOf([{ path: "C:/pwned", content: "pwned" }]));
    assert.match(message, /an absolute path \(C:\/pwned\)/);
  });

  it("a symlink pointing outside the cache is refused", async () => {
    const { message } = await refuse((sandbox) =>
      tarOf([...benignEntries(), { path: "escape", type: "SymbolicLink", linkpath: sandbox.outside }]),
    );
    assert.match(message, /symbolic link/);
  });

  it("a file written through an earlier symlink (escape -> outside, escape/pwned) is refused", async () => {
    const { message } = await refuse((sandbox) =>
      tarOf([
        { path: "escape", type: "SymbolicLink", linkpath: sandbox.outside },
        { path: "escape/pwned", content: "pwned" },
        { path: "escape/secret.txt", content: "overwritten" },
      ]),
    );
    assert.match(message, /a symbolic link \(escape\)/);
  });

  it("a path through an earlier relative symlink (up -> ../.., up/outside/pwned) is refused", async () => {
    const { message } = await refuse(
      tarOf([
        { path: "up", type: "SymbolicLink", linkpath: UP_TO_ROOT },
        { path: "up/outside/pwned", content: "pwned" },
      ]),
    );
    assert.match(message, /a symbolic link \(up\)/);
  });

  it("a harmless-looking symlink that stays inside is refused too (links are never allowed)", async () => {
    await refuse(
      tarOf([...benignEntries(), { path: "alias.pb", type: "SymbolicLink", linkpath: "saved_model.pb" }]),
    );
  });

  it("a hard link to a file outside the cache is refused", async () => {
    const { message } = await refuse((sandbox) =>
      tarOf([
        { path: "secret-link", type: "Link", linkpath: path.join(sandbox.outside, "secret.txt") },
        { path: "secret-link", content: "overwritten through the link" },
      ]),
    );
    assert.match(message, /hard link/);
  });

  it("a hard link between two files of the archive is refused too", async () => {
    await refuse(
      tarOf([...benignEntries(), { path: "./copy.pb", type: "Link", linkpath: "./saved_model.pb" }]),
    );
  });

  it("a character device is refused", async () => {
    const { message } = await refuse(tarOf([{ path: "zero", type: "CharacterDevice" }]));
    assert.match(message, /character device/);
  });

  it("a block device is refused", async () => {
    await refuse(tarOf([...benignEntries(), { path: "disk", type: "BlockDevice" }]));
  });

  it("a FIFO is refused", async () => {
    const { message } = await refuse(tarOf([...benignEntries(), { path: "pipe", type: "FIFO" }]));
    assert.match(message, /FIFO/);
  });

  it("a symlink after hundreds of benign files refuses the whole archive (none of them kept)", async () => {
    const many: EntrySpec[] = [{ path: "./", type: "Directory" }];
    for (let i = 0; i < 400; i++) many.push({ path: `./f${i}.bin`, content: Buffer.alloc(700, i) });
    await refuse((sandbox) =>
      gzip(tarOf([...many, { path: "./zz", type: "SymbolicLink", linkpath: sandbox.outside }])),
    );
  });

  it("a gzip'd archive with a '..' entry is refused", async () => {
    await refuse(gzip(tarOf([...benignEntries(), { path: `${UP_TO_ROOT}/outside/pwned`, content: "x" }])));
  });

  it("setuid, setgid and world-writable modes are dropped from extracted files", async () => {
    const sandbox = await makeSandbox();
    try {
      host.route("/modes", [
        {
          body: tarOf([
            { path: "./", type: "Directory" },
            { path: "./run.sh", content: "#!/bin/sh\n", mode: 0o6777 },
            { path: "./data.bin", content: "x", mode: 0o666 },
          ]),
        },
      ]);
      const dir = await resolve(host.url("/modes"), { cacheDir: sandbox.cacheDir });
      const run = (await fs.stat(path.join(dir, "run.sh"))).mode & 0o7777;
      const data = (await fs.stat(path.join(dir, "data.bin"))).mode & 0o7777;
      assert.equal(run & 0o7000, 0, "no setuid/setgid/sticky");
      assert.equal(run & 0o022, 0, "not group/world-writable");
      assert.equal(run & 0o100, 0o100, "the owner may still execute it");
      assert.equal(data & 0o022, 0);
    } finally {
      await sandbox.cleanup();
    }
  });
});

// The extractor alone: the refused entry is never written, not even inside the temp dir, and
// nothing lands in the directory after extractArchive has returned.
describe("extractor: refusal writes nothing", () => {
  const cases: [string, (outside: string) => Buffer][] = [
    ["symlink", (outside) => tarOf([{ path: "link", type: "SymbolicLink", linkpath: outside }])],
    [
      "hard link",
      () =>
        tarOf([
          { path: "a", content: "a" },
          { path: "h", type: "Link", linkpath: "a" },
        ]),
    ],
    ["absolute path", (outside) => tarOf([{ path: `${outside}/abs`, content: "x" }])],
    ["FIFO", () => tarOf([{ path: "fifo", type: "FIFO" }])],
  ];
  for (const [name, build] of cases) {
    it(`a ${name} entry is not materialised in the target dir`, async () => {
      const dir = await tempDir("extract-refuse-");
      try {
        await assert.rejects(
          extractArchive(Readable.from([build("/tmp/hubcache-outside")]), dir, {
            handle: "h",
            minFreeBytes: 0,
          }),
          { code: "ERR_HUBCACHE_UNSAFE_ARCHIVE" },
        );
        const right = await listAll(dir);
        await fsIdle(); // every fs request tar had queued has landed (see fsIdle)
        assert.deepEqual(await listAll(dir), right, "nothing is written after extractArchive returns");
        assert.ok(
          !right.some((p) => /link|^h$|abs|fifo|tmp/.test(p)),
          `refused entry written: ${right.join(",")}`,
        );
      } finally {
        await fs.rm(dir, { recursive: true, force: true });
      }
    });
  }

  it("files queued before a refused entry are settled before extractArchive returns", async () => {
    const contents = Array.from({ length: 300 }, (_, i) => Buffer.alloc(3000, i));
    // Plain tar in 64 KiB reads, as a socket gives them: the files ahead of the link reach tar in
    // chunks of their own (one inflated block would hold the link too, and nothing be queued).
    const tar = tarWithLinkAfter(contents);
    const reads = Array.from({ length: Math.ceil(tar.length / 65536) }, (_, i) =>
      tar.subarray(i * 65536, (i + 1) * 65536),
    );
    await assertSettledAfterRefusal(Readable.from(reads), contents);
  });
});

describe("extractor: refusal writes nothing, gzip'd", () => {
  it("files inflated ahead of a refused entry are settled before extractArchive returns", async () => {
    // 6 MiB that does not compress ahead of the link: inflate hands it over in several 2 MiB
    // blocks (through the Handoff stage), so files are queued in tar when the link is refused.
    const contents = Array.from({ length: 48 }, () => randomBytes(128 * 1024));
    await assertSettledAfterRefusal(Readable.from([gzip(tarWithLinkAfter(contents))]), contents);
  });
});

/** Files f0, f1... holding `contents`, then a symlink, which refuses the whole archive. */
function tarWithLinkAfter(contents: Buffer[]): Buffer {
  const entries: EntrySpec[] = contents.map((content, i) => ({ path: `f${i}`, content }));
  entries.push({ path: "bad", type: "SymbolicLink", linkpath: "/" });
  return tarOf(entries);
}

/**
 * The archive is refused; nothing is written after extractArchive returns; and what is there is
 * some of the queued files (not the link), each holding only its own bytes: tar drops (or cuts
 * short) the files whose bytes were still in flight when the refusal came.
 */
async function assertSettledAfterRefusal(body: Readable, contents: Buffer[]): Promise<void> {
  const dir = await tempDir("extract-settle-");
  try {
    await assert.rejects(extractArchive(body, dir, { handle: "h" }), { code: "ERR_HUBCACHE_UNSAFE_ARCHIVE" });
    const right = await listAll(dir);
    await fsIdle();
    assert.deepEqual(await listAll(dir), right, "nothing is written after extractArchive returns");
    assert.ok(right.length > 0, "some queued files were written before the refusal");
    for (const name of right) {
      const content = contents[Number(/^f(\d+)$/.exec(name)?.[1] ?? Number.NaN)];
      assert.ok(content, `${name} is not one of the queued files`);
      const bytes = await fs.readFile(path.join(dir, name));
      assert.ok(content.subarray(0, bytes.length).equals(bytes), `${name} holds other bytes`);
    }
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

// The target directory can vanish: a process that took the download over as stalled removes the
// old holder's temp dir. tar then reports an "error" and never ends; extraction must still settle.
describe("extractor: a target directory that is gone", () => {
  const MODEL = tarOf(benignEntries());

  it("missing from the start: rejects with ERR_HUBCACHE_IO (no hang)", { timeout: 30_000 }, async () => {
    const dir = path.join(await tempDir("extract-gone-"), "removed");
    for (const archive of [MODEL, gzip(MODEL)]) {
      await assert.rejects(
        extractArchive(Readable.from([archive]), dir, { handle: "h", minFreeBytes: 0 }),
        (error: unknown) =>
          error instanceof Error &&
          (error as { code?: string }).code === "ERR_HUBCACHE_IO" &&
          /is gone/.test(error.message),
      );
    }
  });

  it("removed while extracting: rejects with ERR_HUBCACHE_IO (no hang)", { timeout: 30_000 }, async () => {
    const dir = await tempDir("extract-gone-");
    const [first, rest] = [MODEL.subarray(0, 512), MODEL.subarray(512)]; // "./", then the files
    async function* source(): AsyncGenerator<Buffer> {
      yield first;
      await new Promise((r) => setTimeout(r, 100)); // let tar create "./"
      await fs.rm(dir, { recursive: true, force: true });
      yield rest;
    }
    await assert.rejects(extractArchive(Readable.from(source()), dir, { handle: "h", minFreeBytes: 0 }), {
      code: "ERR_HUBCACHE_IO",
    });
    await assert.rejects(fs.stat(dir), { code: "ENOENT" }, "nothing re-created the directory");
  });
});

// The facts about node-tar 7 that the extractor relies on, pinned so an upgrade that changes
// them fails here first.
describe("node-tar behaviour hubcache relies on", () => {
  /** Run `archive` through the Unpack `make` builds; `check` then looks at the target dir. */
  async function extractWith(
    archive: Buffer,
    make: (dir: string) => tar.Unpack,
    check: (dir: string) => Promise<void>,
  ): Promise<void> {
    const dir = await tempDir("tar-fact-");
    try {
      const unpack = make(dir);
      unpack.on("error", () => undefined);
      await new Promise<void>((resolveDone) => {
        unpack.on("close", () => resolveDone());
        unpack.on("abort", () => resolveDone());
        Readable.from([archive]).pipe(unpack);
      });
      await check(dir);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  }
  const withLink = tarOf([{ path: "link", type: "SymbolicLink", linkpath: "/etc" }]);

  it("an entry refused in onReadEntry, even with abort(), is still written by tar", async () => {
    await extractWith(
      withLink,
      (dir) => {
        const unpack: tar.Unpack = new tar.Unpack({
          cwd: dir,
          strict: true,
          onReadEntry: () => unpack.abort(new Error("refused")),
        });
        return unpack;
      },
      // tar writes it asynchronously, after "abort": wait for it (a generous bound, not a timing).
      async (dir) => {
        await until(async () => (await listAll(dir)).length > 0, "tar to write the link");
        await fsIdle();
        assert.deepEqual(await listAll(dir), ["link"], "tar runs its own entry handler after onReadEntry");
      },
    );
  });

  it("archives made by tar.c end with two zero blocks, and are extracted whole, plain or gzip'd", async () => {
    const model = await savedModelDir(16 * 1024);
    for (const gzipped of [false, true]) {
      const archive = await tarGz(model, { gzip: gzipped });
      const plain = gzipped ? zlib.gunzipSync(archive) : archive;
      assert.ok(
        plain.subarray(-1024).every((byte) => byte === 0),
        "two zero blocks at the end",
      );
      const dir = await tempDir("tar-fact-");
      try {
        const result = await extractArchive(Readable.from([archive]), dir, { handle: "h", minFreeBytes: 0 });
        assert.ok(result.entries > 0);
        let members = 0;
        await new Promise<void>((done, fail) => {
          const parser = new tar.Parser({
            onReadEntry: (entry) => {
              members++;
              entry.resume();
            },
          });
          parser.on("end", done).on("error", fail).end(plain);
        });
        assert.ok(members > 1, `${members} members: the count below is meaningful`);
        assert.equal(result.entries, members, "every member of the archive is counted");
        assert.deepEqual(await readTree(dir), await readTree(model));
      } finally {
        await fs.rm(dir, { recursive: true, force: true });
      }
    }
  });

  it("filter sees every file and folder in order, with the name, type and size tar writes", async () => {
    const seen: string[] = [];
    await extractWith(
      tarOf(benignEntries()),
      (dir) =>
        new tar.Unpack({
          cwd: dir,
          strict: true,
          filter: (_path, entry) => {
            const e = entry as tar.ReadEntry;
            seen.push(`${e.path} ${e.type} ${e.size}`);
            return true;
          },
        }),
      async () => {
        assert.deepEqual(seen, [
          "./ Directory 0",
          "./saved_model.pb File 3000",
          "./variables/ Directory 0",
          "./variables/variables.index File 5",
          "./variables/variables.data-00000-of-00001 File 5000",
        ]);
      },
    );
  });

  it("Unpack takes one reservation per entry through its replaceable `reservations`", async () => {
    let reserved = 0;
    let cleared = 0;
    await extractWith(
      tarOf(benignEntries()),
      (dir) => {
        const unpack = new tar.Unpack({ cwd: dir, strict: true });
        const inner = unpack.reservations;
        const counting: Pick<typeof inner, "reserve"> = {
          reserve: (paths, fn) => {
            reserved++;
            return inner.reserve(paths, (clear) =>
              fn(() => {
                cleared++;
                return clear();
              }),
            );
          },
        };
        unpack.reservations = counting as typeof inner;
        return unpack;
      },
      async (dir) => {
        assert.equal(reserved, 5);
        assert.equal(cleared, 5, "every reservation is released before tar ends");
        assert.equal(await fs.readFile(path.join(dir, "variables/variables.index"), "utf8"), "index");
      },
    );
  });

  it("an entry refused in filter is never written", async () => {
    await extractWith(
      withLink,
      (dir) => new tar.Unpack({ cwd: dir, strict: true, filter: () => false }),
      async (dir) => {
        await fsIdle(); // all of tar's fs work has landed (see fsIdle)
        assert.deepEqual(await listAll(dir), []);
      },
    );
  });
});
