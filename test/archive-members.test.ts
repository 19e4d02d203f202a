// Every archive member is extracted faithfully, or the archive is refused: members that node-tar
// would drop, rename or cut (sparse files, unknown types, oversized or malformed pax headers,
// names with NUL bytes, a file named ".", members after a zero block) and members that change a
// path's type refuse the whole archive with a coded error naming the member, leaving no trace.
// Each archive is built byte by byte (test/helpers/archives.ts), served over HTTP and resolved.
import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import path from "node:path";
import { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import * as tar from "tar";
import { extractArchive } from "../src/extract/extract.js";
import { MemberCheck } from "../src/extract/member-check.js";
import { resolve } from "../src/resolve.js";
import {
  END_OF_ARCHIVE,
  gnuLongName,
  gzip,
  paxBody,
  paxHeader,
  rawEntry,
  tarEntry,
  tarOf,
} from "./helpers/archives.js";
import { tempDir } from "./helpers/fixtures.js";
import { runCli } from "./helpers/processes.js";
import { type FlakyHost, startFlakyHost } from "./helpers/flaky-host.js";
import { assertNoTrace, expectCode, makeSandbox } from "./helpers/sandbox.js";

let host: FlakyHost;
before(async () => {
  host = await startFlakyHost();
});
after(() => host.close());

const UNSAFE = "ERR_HUBCACHE_UNSAFE_ARCHIVE";
const CORRUPT = "ERR_HUBCACHE_CORRUPT";

/** A benign first member, so the archive is a real tar before the hostile one. */
const MODEL = tarEntry({ path: "saved_model.pb", content: Buffer.alloc(700, 7) });

function archive(...parts: Buffer[]): Buffer {
  return Buffer.concat([MODEL, ...parts, END_OF_ARCHIVE]);
}

let routeCount = 0;
/** Serve `body` (plain and gzip'd), resolve it, expect `code` and `named` in the message, no trace. */
async function refuse(body: Buffer, code: string, named: RegExp): Promise<void> {
  for (const bytes of [body, gzip(body)]) {
    const sandbox = await makeSandbox();
    try {
      const route = `/members/${++routeCount}`;
      host.route(route, [{ body: bytes }]);
      const error = await expectCode(
        resolve(host.url(route), { cacheDir: sandbox.cacheDir, retries: 0 }),
        code,
      );
      assert.match(error.message, named);
      assert.doesNotMatch(error.hint ?? "", /disk|permission/i, "a bad archive is not the user's disk");
      await assertNoTrace(sandbox);
    } finally {
      await sandbox.cleanup();
    }
  }
}

/** Resolve `body` and return the extracted tree: path -> content (folders end with "/"). */
async function extracted(body: Buffer): Promise<Map<string, string>> {
  const sandbox = await makeSandbox();
  try {
    const route = `/members/${++routeCount}`;
    host.route(route, [{ body }]);
    const dir = await resolve(host.url(route), { cacheDir: sandbox.cacheDir, retries: 0 });
    const tree = new Map<string, string>();
    for (const entry of await fs.readdir(dir, { recursive: true, withFileTypes: true })) {
      const full = path.join(entry.parentPath, entry.name);
      const rel = path.relative(dir, full);
      tree.set(
        entry.isDirectory() ? `${rel}/` : rel,
        entry.isDirectory() ? "" : await fs.readFile(full, "latin1"),
      );
    }
    return tree;
  } finally {
    await sandbox.cleanup();
  }
}

describe("members node-tar would not extract faithfully", () => {
  it("a GNU sparse file (type 'S') is refused, naming it", async () => {
    await refuse(
      archive(rawEntry({ name: "variables/sparse.data", type: "S", content: "x".repeat(600), magic: "gnu" })),
      UNSAFE,
      /sparse file.*variables\/sparse\.data/,
    );
  });

  it("a pax sparse file (GNU.sparse.* records, GNUSparseFile.0/...) is refused", async () => {
    await refuse(
      archive(
        paxHeader([
          ["GNU.sparse.major", "1"],
          ["GNU.sparse.minor", "0"],
          ["GNU.sparse.name", "variables/weights.bin"],
          ["GNU.sparse.realsize", "1048576"],
        ]),
        rawEntry({ name: "./GNUSparseFile.0/weights.bin", type: "0", content: "1\n0\n512\n" }),
      ),
      UNSAFE,
      /sparse file.*GNUSparseFile\.0\/weights\.bin/,
    );
  });

  it("an unknown type flag is refused, naming the member", async () => {
    await refuse(
      archive(rawEntry({ name: "mystery.bin", type: "Z", content: "data" })),
      UNSAFE,
      /"Z".*mystery\.bin/,
    );
  });

  it("other GNU and vendor types (dump dir, volume label, long link name) are refused", async () => {
    await refuse(
      archive(rawEntry({ name: "dumpdir/", type: "D", content: "Ya\0\0" })),
      UNSAFE,
      /dump directory/,
    );
    await refuse(archive(rawEntry({ name: "label", type: "V" })), UNSAFE, /volume label.*label/);
    await refuse(
      archive(rawEntry({ name: "././@LongLink", type: "K", content: "target\0" })),
      UNSAFE,
      /long link/,
    );
  });

  it("a pax header over the reader's size limit is refused, naming the member", async () => {
    const huge = paxHeader([
      ["comment", "c".repeat((1 << 20) + 10)],
      ["path", "variables/the-real-name.data"],
    ]);
    await refuse(
      archive(huge, rawEntry({ name: "variables/the-real-na", type: "0", content: "weights" })),
      UNSAFE,
      /over the 1048576-byte limit.*variables\/the-real-na/,
    );
  });

  it("a ustar name with a NUL byte in it is refused (not cut at the NUL)", async () => {
    const name = Buffer.concat([Buffer.from("model.pb"), Buffer.alloc(1), Buffer.from("evil")]);
    await refuse(
      archive(rawEntry({ name, type: "0", content: "x" })),
      UNSAFE,
      /NUL byte.*model\.pb\\u0000evil/,
    );
  });

  it("a pax path or a GNU long name with a NUL byte in it is refused", async () => {
    const name = Buffer.concat([Buffer.from("variables/long.data"), Buffer.alloc(1), Buffer.from(".evil")]);
    await refuse(
      archive(paxHeader([["path", name]]), rawEntry({ name: "short", type: "0", content: "x" })),
      UNSAFE,
      /NUL byte.*variables\/long\.data\\u0000\.evil/,
    );
    await refuse(
      archive(gnuLongName(name), rawEntry({ name: "short", type: "0", content: "x", magic: "gnu" })),
      UNSAFE,
      /NUL byte.*variables\/long\.data\\u0000\.evil/,
    );
  });

  it("a name that is not valid UTF-8 is refused (not replaced by U+FFFD)", async () => {
    const name = Buffer.from([0x6d, 0xff, 0xfe, 0x2e, 0x70, 0x62]); // "m\xff\xfe.pb"
    await refuse(archive(rawEntry({ name, type: "0", content: "x" })), UNSAFE, /not valid UTF-8/);
    // Python's tarfile marks such pax names with hdrcharset=BINARY.
    await refuse(
      archive(
        paxHeader([
          ["hdrcharset", "BINARY"],
          ["path", name],
        ]),
        rawEntry({ name: "m__.pb", type: "0", content: "x" }),
      ),
      UNSAFE,
      /"m\u00ff\u00fe\.pb" that is not valid UTF-8/,
    );
  });

  it("a regular file named '.' (or 'dir/.') is refused", async () => {
    await refuse(
      archive(rawEntry({ name: ".", type: "0", content: "dropped" })),
      UNSAFE,
      /regular file named "\."/,
    );
    await refuse(
      archive(
        rawEntry({ name: "variables/", type: "5" }),
        rawEntry({ name: "variables/.", type: "0", content: "x" }),
      ),
      UNSAFE,
      /regular file named "variables\/\."/,
    );
  });

  it("a name part longer than file systems allow is refused (not ERR_HUBCACHE_IO)", async () => {
    const name = `variables/${"n".repeat(300)}.data`;
    await refuse(
      archive(paxHeader([["path", name]]), rawEntry({ name: "short", type: "0", content: "x" })),
      UNSAFE,
      /longer than 255 bytes.*variables\/nnn/,
    );
  });

  it("a malformed pax record (wrong length) is corrupt, not dropped", async () => {
    const bad = Buffer.from("99 path=variables/real-name.data\n");
    await refuse(
      archive(paxHeader(bad), rawEntry({ name: "fallback", type: "0", content: "x" })),
      CORRUPT,
      /pax record.*fallback/,
    );
  });

  it("a pax path with a newline (node-tar drops the record) is refused, naming both names", async () => {
    await refuse(
      archive(paxHeader([["path", "a\nb.pb"]]), rawEntry({ name: "fallback.pb", type: "0", content: "x" })),
      UNSAFE,
      /a\\nb\.pb.*fallback\.pb/,
    );
  });

  it("a pax record hubcache does not understand is refused, naming the key and the member", async () => {
    await refuse(
      archive(
        paxHeader([["VENDOR.realname", "other.pb"]]),
        rawEntry({ name: "plain.pb", type: "0", content: "x" }),
      ),
      UNSAFE,
      /VENDOR\.realname.*plain\.pb/,
    );
  });

  it("a global pax header that sets a path or a size is refused", async () => {
    await refuse(
      archive(
        paxHeader([["path", "everything"]], { global: true }),
        rawEntry({ name: "a.pb", type: "0", content: "x" }),
      ),
      UNSAFE,
      /global pax header.*path.*a\.pb/,
    );
  });

  it("a folder header with data (node-tar reads the data as headers) is corrupt", async () => {
    const hidden = rawEntry({ name: "hidden.pb", type: "0", content: "smuggled" });
    await refuse(
      archive(
        rawEntry({ name: "variables/", type: "5", content: hidden }),
        rawEntry({ name: "after", type: "0" }),
      ),
      CORRUPT,
      /folder with 1024 bytes of data \(variables\/\)/,
    );
  });

  it("members after a single zero block (node-tar reads on, other tars stop) are corrupt", async () => {
    await refuse(
      archive(Buffer.alloc(512), rawEntry({ name: "after-zero.pb", type: "0", content: "x" })),
      CORRUPT,
      /zero block.*after-zero\.pb/,
    );
  });

  it("members after the end-of-archive marker are corrupt (not silently dropped)", async () => {
    const body = Buffer.concat([
      archive(),
      rawEntry({ name: "appended.pb", type: "0", content: "x" }),
      END_OF_ARCHIVE,
    ]);
    await refuse(body, CORRUPT, /after the end-of-archive marker/);
  });
});

describe("members that change a path's type", () => {
  it("a file, then a folder of the same name, is refused", async () => {
    await refuse(
      archive(
        rawEntry({ name: "assets", type: "0", content: "x" }),
        rawEntry({ name: "assets/", type: "5" }),
      ),
      UNSAFE,
      /file that a later member turns into a folder \(assets\/\)/,
    );
  });

  it("a folder, then a file of the same name, is refused", async () => {
    await refuse(
      archive(
        rawEntry({ name: "./variables/", type: "5" }),
        rawEntry({ name: "variables/x", type: "0", content: "1" }),
        rawEntry({ name: "variables", type: "0", content: "x" }),
      ),
      UNSAFE,
      /folder that a later member turns into a file \(variables\)/,
    );
  });

  it("a file, then a member inside it, is refused (not ERR_HUBCACHE_IO)", async () => {
    await refuse(
      archive(
        rawEntry({ name: "assets", type: "0", content: "x" }),
        rawEntry({ name: "./assets/vocab.txt", type: "0" }),
      ),
      UNSAFE,
      /file "assets" that a later member uses as a folder/,
    );
  });
});

describe("members hubcache understands are extracted under their full names with their bytes", () => {
  it("pax and GNU long names, a git-style global comment, './' prefixes and xattrs", async () => {
    const longDir = `variables/${"d".repeat(120)}`;
    const tree = await extracted(
      gzip(
        archive(
          paxHeader([["comment", "3f1b2c4d5e6f"]], { global: true }),
          rawEntry({ name: "./assets/", type: "5" }),
          paxHeader([
            ["path", `${longDir}/weights.data`],
            ["SCHILY.xattr.user.origin", "hub"],
            ["mtime", "1704067200.5"],
          ]),
          rawEntry({ name: "variables/ddd/weights.data", type: "0", content: "pax bytes" }),
          gnuLongName(`assets/${"v".repeat(150)}.txt`),
          rawEntry({ name: "assets/vvv.txt", type: "0", content: "gnu bytes", magic: "gnu" }),
          rawEntry({ name: "old-style-dir/", type: "\0" }),
          rawEntry({ name: "contiguous.bin", type: "7", content: "c" }),
        ),
      ),
    );
    assert.equal(tree.get(`${longDir}/weights.data`), "pax bytes");
    assert.equal(tree.get(`assets/${"v".repeat(150)}.txt`), "gnu bytes");
    assert.equal(tree.get("saved_model.pb"), "\x07".repeat(700));
    assert.equal(tree.get("contiguous.bin"), "c");
    assert.ok(tree.has("old-style-dir/"));
    assert.deepEqual(
      [...tree.keys()].filter((key) => !key.endsWith("/")).sort(),
      [
        "assets/" + "v".repeat(150) + ".txt",
        "contiguous.bin",
        "saved_model.pb",
        `${longDir}/weights.data`,
      ].sort(),
    );
  });

  it("a later file of the same name replaces the earlier one (as in every tar)", async () => {
    const tree = await extracted(
      archive(
        rawEntry({ name: "a.txt", type: "0", content: "first" }),
        rawEntry({ name: "./a.txt", type: "0", content: "second" }),
      ),
    );
    assert.equal(tree.get("a.txt"), "second");
  });

  it("paxBody writes the records node-tar's own pax writer writes", () => {
    for (const name of ["x".repeat(95), "y".repeat(5), `z${"é".repeat(400)}`]) {
      const written = new tar.Pax({ path: name }).encode();
      const body = paxBody([["path", name]]);
      assert.deepEqual(written.subarray(512, 512 + body.length), body);
    }
  });
});

describe("a member node-tar does not report", () => {
  it("is refused as soon as tar has been handed the bytes past it", async () => {
    const written: Buffer[] = [];
    const check = new MemberCheck({
      handle: "h",
      maxFiles: 100,
      sink: { write: (chunk) => written.push(chunk) > 0, end: () => undefined, once: () => undefined },
      reported: () => 0, // a tar that silently drops every member
      pauseEvery: 1000,
      whenWritten: async () => undefined,
    });
    await assert.rejects(
      new Promise<void>((resolveDone, reject) => {
        check.on("error", reject);
        check.on("finish", resolveDone);
        check.end(tarOf([{ path: "dropped.pb", content: "x" }]));
      }),
      (error: Error & { code?: string }) =>
        error.code === UNSAFE && /members tar skips \(1, from dropped\.pb\)/.test(error.message),
    );
  });
});

describe("the member-count limit (maxFiles)", () => {
  const many = tarOf(Array.from({ length: 30 }, (_, i) => ({ path: `f${i}.bin`, content: "x" })));

  it("an archive with more members than maxFiles is ERR_HUBCACHE_TOO_LARGE, naming the limit", async () => {
    const dir = await tempDir("max-files-");
    try {
      await assert.rejects(
        extractArchive(Readable.from([gzip(many)]), dir, { handle: "h", minFreeBytes: 0, maxFiles: 10 }),
        (error: Error & { code?: string; hint?: string }) =>
          error.code === "ERR_HUBCACHE_TOO_LARGE" &&
          /more than 10 files and folders.*maxFiles/.test(error.message) &&
          /HUBCACHE_MAX_FILES/.test(error.hint ?? ""),
      );
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it("an archive at the limit is extracted", async () => {
    const dir = await tempDir("max-files-");
    try {
      const result = await extractArchive(Readable.from([many]), dir, {
        handle: "h",
        minFreeBytes: 0,
        maxFiles: 30,
      });
      assert.equal(result.entries, 30);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it("HUBCACHE_MAX_FILES, the maxFiles option and --max-files set the limit of a resolve", async () => {
    const route = `/members/${++routeCount}`;
    host.route(route, [{ body: gzip(many) }]);
    const handle = host.url(route);
    const tooMany = /more than 10 files and folders/;
    for (const options of [{ env: { HUBCACHE_MAX_FILES: "10" } }, { maxFiles: 10 }]) {
      const sandbox = await makeSandbox();
      try {
        const error = await expectCode(
          resolve(handle, { cacheDir: sandbox.cacheDir, retries: 0, ...options }),
          "ERR_HUBCACHE_TOO_LARGE",
        );
        assert.match(error.message, tooMany);
        await assertNoTrace(sandbox);
      } finally {
        await sandbox.cleanup();
      }
    }
    const sandbox = await makeSandbox();
    try {
      const refused = await runCli(["resolve", "--max-files", "10", "--cache-dir", sandbox.cacheDir, handle]);
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /error\[ERR_HUBCACHE_TOO_LARGE\]: .*more than 10 files/);
      assert.match(refused.stderr, /--max-files/, "the hint names the flag");
      const allowed = await runCli(["resolve", "--max-files", "30", "--cache-dir", sandbox.cacheDir, handle]);
      assert.equal(allowed.code, 0, allowed.stderr);
      assert.equal((await fs.readdir(allowed.stdout.trim())).length, 30);
    } finally {
      await sandbox.cleanup();
    }
  });
});
