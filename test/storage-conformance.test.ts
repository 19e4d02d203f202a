// The shared Storage conformance suite against every backend that runs in-process: local disk,
// s3rver (S3 protocol), the GCS JSON API server, and http(s) read-only (with and without Range).
import { promises as fs } from "node:fs";
import path from "node:path";
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
// The storage layer as the library uses it inside (the suite also runs its internal probe).
import { openStorage } from "../src/storage/open.js";
import { tempDir } from "./helpers/fixtures.js";
import { type GcsFake, createGcsFake } from "./helpers/gcs-fake.js";
import { AWS_ISOLATION, createS3Bucket, gcsEnv, s3Env, uniqueBucket } from "./helpers/object-stores.js";
import { type S3rverServer, startS3rver } from "./helpers/s3rver.js";
import { type StaticServer, startStaticServer } from "./helpers/static-server.js";
import { storageConformance } from "./helpers/storage-conformance.js";

Object.assign(process.env, AWS_ISOLATION);

let s3: S3rverServer;
let gcs: GcsFake;
let gcsUrl: string;
let staticRoot: string;
let withRanges: StaticServer;
let withoutRanges: StaticServer;
let refusingHead: StaticServer;
const s3Bucket = uniqueBucket();
const gcsBucket = uniqueBucket();
let counter = 0;
const fresh = (): string => `root-${process.pid}-${++counter}`;

before(async () => {
  s3 = await startS3rver(await tempDir("s3rver-"));
  await createS3Bucket(s3.endpoint, s3Bucket);
  gcs = createGcsFake({ buckets: [gcsBucket] });
  gcsUrl = await gcs.listen();
  staticRoot = await tempDir("static-");
  withRanges = await startStaticServer(staticRoot);
  withoutRanges = await startStaticServer(staticRoot, { ranges: false });
  refusingHead = await startStaticServer(staticRoot, {
    headStatus: 403,
    forbidden: (pathname) => pathname.includes("/private/"),
  });
});
after(async () => {
  await Promise.all([
    s3.close(),
    gcs.close(),
    withRanges.close(),
    withoutRanges.close(),
    refusingHead.close(),
  ]);
});

storageConformance("local disk", {
  open: async () => openStorage(await tempDir("local-storage-")),
});

storageConformance("s3rver (S3 protocol)", {
  open: () => openStorage(`s3://${s3Bucket}/${fresh()}`, { env: s3Env(s3.endpoint) }),
  createOnly: "ignored",
});

storageConformance("GCS JSON API server", {
  open: () => openStorage(`gs://${gcsBucket}/${fresh()}`, { env: gcsEnv(gcsUrl) }),
});

const seedStatic = async (root: string, key: string, bytes: Buffer): Promise<void> => {
  const file = path.join(staticRoot, root, ...key.split("/"));
  await fs.mkdir(path.dirname(file), { recursive: true });
  await fs.writeFile(file, bytes);
};

for (const [label, server] of [
  ["http(s), read-only", () => withRanges],
  ["http(s), read-only, server without Range support", () => withoutRanges],
  ["http(s), read-only, server refusing HEAD with 403 (presigned GET URLs)", () => refusingHead],
] as const) {
  storageConformance(label, {
    open: () => {
      const root = fresh();
      return openStorage(`${server().origin}/${root}`);
    },
    seed: (storage, key, bytes) => seedStatic(new URL(storage.location).pathname.slice(1), key, bytes),
  });
}

describe("http(s) existence check where HEAD is refused with 403", () => {
  test("stat falls back to a one-byte GET; a 403 on that GET too is ERR_HUBCACHE_FORBIDDEN", async () => {
    const root = fresh();
    await seedStatic(root, "model.json", Buffer.from("{}"));
    await seedStatic(root, "private/model.json", Buffer.from("{}"));
    const storage = await openStorage(`${refusingHead.origin}/${root}`);
    assert.equal((await storage.stat("model.json"))?.size, 2, "HEAD refused, the GET says it exists");
    assert.equal(await storage.stat("missing.json"), undefined);
    await assert.rejects(storage.stat("private/model.json"), {
      code: "ERR_HUBCACHE_FORBIDDEN",
      status: 403,
    });
  });
});
