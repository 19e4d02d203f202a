// gzip's framing, read by hubcache itself so zlib can inflate raw deflate (gzip-frame.ts): every
// header form RFC 1952 allows is read, the trailer's CRC-32 (derived from the per-file CRCs,
// crc32-combine.ts) and length are checked, and what is not one well-formed member is refused.
// The CRC-32 itself (crc32.ts): the SIMD one where it loads, node:zlib's where it does not.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import { createRequire } from "node:module";
import { Readable } from "node:stream";
import { describe, it } from "node:test";
import zlib from "node:zlib";
import { crc32Combine } from "../src/extract/crc32-combine.js";
import { chooseCrc32, crc32, crc32Backend } from "../src/extract/crc32.js";
import { extractArchive } from "../src/extract/extract.js";
import { gnuLongName, paxPath, tarEntry, tarOf } from "./helpers/archives.js";
import { readTree, realisticWeights, tempDir } from "./helpers/fixtures.js";

// Files on both sides of the size at which a file's CRC is combined in rather than re-read.
const FILES = [
  { path: "saved_model.pb", content: realisticWeights(300_000, 1) },
  { path: "assets/", type: "Directory" as const },
  { path: "assets/vocab.txt", content: "a\nb\nc\n" },
  { path: "variables/", type: "Directory" as const },
  { path: "variables/variables.index", content: realisticWeights(16 * 1024 - 1, 2) },
  { path: "variables/variables.data-00000-of-00001", content: realisticWeights(16 * 1024, 3) },
  { path: "empty.txt", content: "" },
];
const TAR = tarOf(FILES);
const DEFLATE = zlib.deflateRawSync(TAR);

function trailer(data: Buffer = TAR): Buffer {
  const bytes = Buffer.alloc(8);
  bytes.writeUInt32LE(zlib.crc32(data), 0);
  bytes.writeUInt32LE(data.length % 2 ** 32, 4);
  return bytes;
}

/** A gzip member with the given flags and optional fields, built byte by byte. */
function member(
  fields: {
    extra?: Buffer;
    name?: string;
    comment?: string;
    headerCrc?: boolean | "wrong";
    flags?: number;
  } = {},
): Buffer {
  let flags = fields.flags ?? 0;
  const parts: Buffer[] = [];
  if (fields.extra) {
    flags |= 0x04;
    const length = Buffer.alloc(2);
    length.writeUInt16LE(fields.extra.length);
    parts.push(length, fields.extra);
  }
  if (fields.name !== undefined) {
    flags |= 0x08;
    parts.push(Buffer.from(`${fields.name}\0`, "latin1"));
  }
  if (fields.comment !== undefined) {
    flags |= 0x10;
    parts.push(Buffer.from(`${fields.comment}\0`, "latin1"));
  }
  if (fields.headerCrc) flags |= 0x02;
  const fixed = Buffer.from([0x1f, 0x8b, 8, flags, 0, 0, 0, 0, 0, 3]);
  let header = Buffer.concat([fixed, ...parts]);
  if (fields.headerCrc) {
    const crc16 = Buffer.alloc(2);
    crc16.writeUInt16LE((zlib.crc32(header) & 0xffff) ^ (fields.headerCrc === "wrong" ? 1 : 0));
    header = Buffer.concat([header, crc16]);
  }
  return Buffer.concat([header, DEFLATE, trailer()]);
}

/** `bytes` in reads of `size` bytes, as a socket may deliver them. */
function reads(bytes: Buffer, size: number): Readable {
  const chunks: Buffer[] = [];
  for (let at = 0; at < bytes.length; at += size) chunks.push(bytes.subarray(at, at + size));
  return Readable.from(chunks);
}

async function extract(
  body: Buffer | Readable,
  digests = true,
): Promise<{ tree: Map<string, Buffer>; crcs: Map<string, number> | undefined }> {
  const dir = await tempDir("gzip-frame-");
  try {
    const source = Buffer.isBuffer(body) ? Readable.from([body]) : body;
    const result = await extractArchive(source, dir, { handle: "h", minFreeBytes: 0, digests });
    return { tree: await readTree(dir), crcs: result.crc32ByPath };
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

function assertModel(tree: Map<string, Buffer>): void {
  for (const file of FILES) {
    if ("type" in file) continue;
    assert.deepEqual(tree.get(file.path), Buffer.from(file.content), file.path);
  }
}

async function refused(body: Buffer, code: string, message: RegExp): Promise<void> {
  await assert.rejects(extract(body), (error: Error & { code?: string }) => {
    assert.equal(error.code, code, error.message);
    assert.match(error.message, message);
    return true;
  });
}

describe("gzip framing", () => {
  it("reads every optional header field, split across reads of any size", async () => {
    const body = member({
      extra: randomBytes(300),
      name: "model.tar",
      comment: "made by hand",
      headerCrc: true,
    });
    const oneByOne = [...body.subarray(0, 400)].map((byte) => Buffer.from([byte]));
    const bodies = [
      Readable.from([...oneByOne, body.subarray(400)]),
      reads(body, 512),
      reads(body, 65536),
      reads(body, body.length),
    ];
    for (const source of bodies) {
      const { tree, crcs } = await extract(source);
      assertModel(tree);
      assert.equal(crcs?.get("saved_model.pb"), zlib.crc32(FILES[0]?.content ?? ""));
    }
  });

  it("checks the trailer with digests off too", async () => {
    assertModel((await extract(member({ name: "x" }), false)).tree);
    const bad = member();
    bad.writeUInt32LE((bad.readUInt32LE(bad.length - 8) ^ 1) >>> 0, bad.length - 8);
    await assert.rejects(extract(bad, false), { code: "ERR_HUBCACHE_CORRUPT" });
  });

  it("counts metadata members (pax headers, GNU long names) in the tar's CRC-32", async () => {
    const long = `d/${"x".repeat(150)}`;
    const tar = Buffer.concat([
      tarEntry({ path: "d/", type: "Directory" }),
      paxPath(long),
      tarEntry({ path: "placeholder", content: Buffer.alloc(20_000, 1) }),
      gnuLongName(`d/${"y".repeat(130)}`),
      tarEntry({ path: "placeholder", content: "hello" }),
      Buffer.alloc(1024),
    ]);
    for (const digests of [true, false]) {
      const { tree } = await extract(zlib.gzipSync(tar), digests);
      assert.deepEqual(tree.get(long), Buffer.alloc(20_000, 1));
      assert.deepEqual(tree.get(`d/${"y".repeat(130)}`), Buffer.from("hello"));
    }
  });

  it("accepts zero padding after the trailer", async () => {
    assertModel((await extract(Buffer.concat([member(), Buffer.alloc(10_000)]))).tree);
  });

  it("refuses a header whose CRC is wrong, and reserved flags", async () => {
    await refused(member({ headerCrc: "wrong" }), "ERR_HUBCACHE_CORRUPT", /gzip header whose CRC/);
    await refused(member({ flags: 0x20 }), "ERR_HUBCACHE_CORRUPT", /reserved flags/);
  });

  it("refuses a second gzip member and other data after the trailer", async () => {
    const second = zlib.gzipSync(Buffer.from("more"));
    await refused(Buffer.concat([member(), second]), "ERR_HUBCACHE_CORRUPT", /second gzip member/);
    // More than the 64 KiB kept after the deflate data (in 16 KiB reads): refused without reading it.
    await assert.rejects(extract(reads(Buffer.concat([member(), randomBytes(100_000)]), 16384)), {
      code: "ERR_HUBCACHE_CORRUPT",
      message: /100008 bytes after its gzip data/,
    });
  });

  it("a body cut inside the header, or right after the deflate data, is truncated", async () => {
    const body = member({ name: "a-long-name.tar" });
    await refused(body.subarray(0, 14), "ERR_HUBCACHE_TRUNCATED", /gzip header/);
    await refused(body.subarray(0, body.length - 8), "ERR_HUBCACHE_TRUNCATED", /end of its gzip data/);
    await refused(body.subarray(0, body.length - 3), "ERR_HUBCACHE_TRUNCATED", /end of its gzip data/);
  });

  it("refuses a trailer whose CRC or length is off by one bit", async () => {
    for (const at of [8, 4]) {
      const bad = member();
      bad.writeUInt32LE((bad.readUInt32LE(bad.length - at) ^ 1) >>> 0, bad.length - at);
      await refused(bad, "ERR_HUBCACHE_CORRUPT", at === 8 ? /CRC-32 check/ : /length does not match/);
    }
  });
});

describe("crc32Combine", () => {
  it("gives zlib's CRC-32 of the joined bytes, for random lengths from 0 to 200 KiB", () => {
    for (let i = 0; i < 300; i++) {
      const a = randomBytes(Math.floor(Math.random() ** 2 * 5000));
      const b = randomBytes(i % 10 === 0 ? 0 : Math.floor(Math.random() ** 2 * 200_000));
      assert.equal(
        crc32Combine(zlib.crc32(a), zlib.crc32(b), b.length),
        zlib.crc32(Buffer.concat([a, b])),
        `${a.length} + ${b.length} bytes`,
      );
    }
  });

  it("handles lengths past 4 GiB: joining is associative whatever the lengths", () => {
    // combine(combine(a, b, m), c, n) = combine(a, combine(b, c, n), m + n) holds for any CRC
    // values; it fails if a length's bits above 32 are lost.
    for (const [m, n] of [
      [2 ** 32 + 3, 2 ** 31 + 5],
      [2 ** 40 + 12345, 7],
      [1, 2 ** 33],
    ] as const) {
      const [a, b, c] = [0x12345678, 0x9abcdef0, 0x0fedcba9];
      assert.equal(
        crc32Combine(crc32Combine(a, b, m), c, n),
        crc32Combine(a, crc32Combine(b, c, n), m + n),
        `${m} + ${n}`,
      );
    }
    // And against real bytes in 1 MiB steps: 4 MiB of zeros after 100 random bytes.
    const a = randomBytes(100);
    let stepped = zlib.crc32(a);
    for (let i = 0; i < 4; i++) stepped = zlib.crc32(Buffer.alloc(1 << 20), stepped);
    assert.equal(crc32Combine(zlib.crc32(a), zlib.crc32(Buffer.alloc(4 << 20)), 4 << 20), stepped);
  });
});

describe("crc32", () => {
  const require = createRequire(import.meta.url);

  it("uses @node-rs/crc32's SIMD CRC-32 on this platform (it ships a binary for linux-x64)", () => {
    assert.equal(crc32Backend(), "@node-rs/crc32");
  });

  it("gives node:zlib's values, in one call and continued chunk by chunk", () => {
    const data = randomBytes(3 << 20);
    assert.equal(crc32(data), zlib.crc32(data));
    let running = 0;
    for (let at = 0; at < data.length; at += 65_537) running = crc32(data.subarray(at, at + 65_537), running);
    assert.equal(running, zlib.crc32(data));
    assert.equal(crc32(Buffer.alloc(0), 0x1234), 0x1234);
    assert.equal(crc32(Buffer.from("123456789")), 0xcbf43926);
  });

  it("falls back to node:zlib's when the binary is missing, broken or computes something else", () => {
    const data = randomBytes(100_000);
    const missing = (): never => {
      throw Object.assign(new Error("Cannot find module '@node-rs/crc32-linux-x64-gnu'"), {
        code: "MODULE_NOT_FOUND",
      });
    };
    const wrong = (): unknown => ({ crc32: (input: Uint8Array) => input.length });
    const notAFunction = (): unknown => ({ crc32: 42 });
    for (const load of [missing, wrong, notAFunction, () => undefined]) {
      const choice = chooseCrc32(load);
      assert.equal(choice.backend, "node:zlib");
      assert.equal(choice.crc32(data), zlib.crc32(data));
    }
    assert.equal(chooseCrc32(require).backend, "@node-rs/crc32");
  });
});
