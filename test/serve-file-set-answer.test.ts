/**
 * When the mirror offers the files form (src/serve/file-set-answer.ts), over a ModelFiles built
 * here: only to a client that asks for it, with the record's CRC-32s, and never with a path that is
 * not plain (a tampered record gets the tar instead). serve-fast-client.test.ts covers an entry
 * without a record (Python's) through a real mirror.
 */
import assert from "node:assert/strict";
import type { IncomingMessage } from "node:http";
import { Readable } from "node:stream";
import { test } from "node:test";
import { RECORD_VERSION, type RecordFields } from "../src/cache/record.js";
import { FILE_SET_MEDIA_TYPE } from "../src/extract/file-set.js";
import { entryFileSet } from "../src/serve/file-set-answer.js";
import type { ModelFile, ModelFiles } from "../src/serve/model-files.js";

const HANDLE = "https://tfhub.dev/google/answer/1";

function request(accept: string | undefined): IncomingMessage {
  return { headers: accept === undefined ? {} : { accept } } as IncomingMessage;
}

function modelFiles(paths: string[], dirs: string[] = []): ModelFiles {
  const files: ModelFile[] = paths.map((path) => ({
    path,
    size: 4,
    modifiedMs: 0,
    recordedCrc32: "0badf00d",
    version: "",
  }));
  const record: RecordFields = {
    version: RECORD_VERSION,
    handle: HANDLE,
    createdAt: new Date(0).toISOString(),
    bytes: 4 * paths.length,
    archiveBytes: 100,
    files: paths.map((path) => ({ path, size: 4, crc32: "0badf00d" })),
    archiveSha256: "a".repeat(64),
  };
  return {
    hash: "0".repeat(40),
    record,
    modelRoot: () => Promise.resolve(""),
    list: () => Promise.resolve({ files, dirs }),
    stat: () => Promise.resolve(undefined),
    open: () => Promise.resolve(Readable.from([])),
  };
}

test("the files form: offered to a client that asks, with the record's digests", async () => {
  const asked = request(`${FILE_SET_MEDIA_TYPE}, */*;q=0.5`);
  const list = await entryFileSet(
    asked,
    HANDLE,
    modelFiles(["saved_model.pb", "variables/v.data"], ["variables"]),
  );
  assert.deepEqual(
    list?.files.map((file) => [file.path, file.crc32]),
    [
      ["saved_model.pb", "0badf00d"],
      ["variables/v.data", "0badf00d"],
    ],
  );
  assert.equal(await entryFileSet(request("*/*"), HANDLE, modelFiles(["saved_model.pb"])), undefined);
  assert.equal(await entryFileSet(request(undefined), HANDLE, modelFiles(["saved_model.pb"])), undefined);
});

test("a record whose paths are not plain gets the tar, not a list its clients refuse", async () => {
  const asked = request(FILE_SET_MEDIA_TYPE);
  for (const bad of ["../outside", "a/../../b", "/etc/passwd", "a\\b", "a//b", "./a"]) {
    assert.equal(await entryFileSet(asked, HANDLE, modelFiles(["saved_model.pb", bad])), undefined, bad);
  }
  assert.equal(await entryFileSet(asked, HANDLE, modelFiles(["saved_model.pb"], ["../up"])), undefined);
});
