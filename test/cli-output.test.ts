// What the CLI prints: control characters escaped on every path (errors, info, events), uncaught
// errors redacted, and one line per retry on a stderr that is no terminal.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { formatInfo } from "../src/cli/model-commands.js";
import { formatError, printable } from "../src/cli/output.js";
import { describeEvent } from "../src/cli/progress-bar.js";
import { HubcacheError } from "../src/errors.js";
import type { ModelInfo } from "../src/load/info.js";
import { benignEntries, gzip, tarOf } from "./helpers/archives.js";
import { type FlakyHost, startFlakyHost } from "./helpers/flaky-host.js";
import { CLI, TEST_TIMEOUT_MS, start, startCli } from "./helpers/processes.js";
import { makeSandbox } from "./helpers/sandbox.js";

/** A member name that tries everything: colour, bell, carriage return, and a forged error line. */
const EVIL = "pi\x1b[31mpe\x07\r\nerror[ERR_HUBCACHE_FORGED]: all is well\u202e";
// eslint-disable-next-line no-control-regex
const RAW_CONTROL = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]/;

let host: FlakyHost;
before(async () => {
  host = await startFlakyHost();
  // In a plain ustar header (ASCII only): every byte of the name reaches the reader as it is.
  const name = EVIL.replace("\u202e", "");
  host.route("/evil/1", [{ body: gzip(tarOf([...benignEntries(), { path: name, type: "FIFO" }])) }]);
  // Each test gets its own route: a route's script is played once, request by request.
  for (const route of ["/flaky/1", "/flaky-tty/1"]) {
    host.route(route, [
      { status: 503, headers: { "Retry-After": "0" } },
      { status: 503, headers: { "Retry-After": "0" } },
      { body: gzip(tarOf(benignEntries())) },
    ]);
  }
});
after(() => host.close());

describe("control characters never reach the terminal", () => {
  test("printable escapes C0, DEL, C1 and bidi overrides, and keeps everything else", () => {
    assert.equal(
      printable("a\x1b[31mb\x07c\rd\ne\tf\x7f\x9b\u202eg"),
      "a\\x1b[31mb\\x07c\\rd\\ne\\tf\\x7f\\x9b\\u202eg",
    );
    assert.equal(printable("https://tfhub.dev/google/é/1 ok"), "https://tfhub.dev/google/é/1 ok");
  });

  test("errors, hints, events and info rows are escaped", () => {
    const error = new HubcacheError("ERR_HUBCACHE_UNSAFE_ARCHIVE", `holds ${EVIL}`, { hint: `see ${EVIL}` });
    const shown = formatError(error);
    assert.doesNotMatch(shown, RAW_CONTROL);
    assert.equal(shown.split("\n").filter((line) => line.startsWith("error[")).length, 1);
    for (const event of [
      { type: "warning", message: EVIL } as const,
      { type: "retry", handle: EVIL, attempt: 1, delayMs: 10, reason: EVIL } as const,
      { type: "cache-incomplete", handle: EVIL, path: "/x", reason: EVIL } as const,
    ]) {
      const text = describeEvent(event) ?? "";
      assert.doesNotMatch(text, RAW_CONTROL);
      assert.doesNotMatch(text, /\n/);
    }
    const info: ModelInfo = {
      handle: EVIL,
      kind: "unknown",
      location: `/cache/${EVIL}`,
      cacheEntry: undefined,
      generatedBy: undefined,
      convertedBy: undefined,
      inputs: [],
      outputs: [],
      weights: { tensors: 0, files: 0, bytes: undefined },
      files: [{ path: EVIL, size: 1 }],
      totalBytes: 1,
      note: EVIL,
    };
    const text = formatInfo(info);
    assert.doesNotMatch(text, RAW_CONTROL);
    assert.doesNotMatch(text, /^error\[/m);
  });

  test(
    "a member name with a newline forges no second error line (real archive, real CLI)",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const sandbox = await makeSandbox();
      try {
        const run = startCli(["resolve", "--cache-dir", sandbox.cacheDir, host.url("/evil/1")]);
        const result = await run.done;
        assert.equal(result.code, 1, result.stderr);
        assert.match(
          result.stderr,
          /^error\[ERR_HUBCACHE_UNSAFE_ARCHIVE\]: .*pi\\x1b\[31mpe\\x07\\r\\nerror/m,
        );
        assert.doesNotMatch(result.stderr, RAW_CONTROL);
        assert.equal(result.stderr.split("\n").filter((line) => line.startsWith("error[")).length, 1);
      } finally {
        await sandbox.cleanup();
      }
    },
  );
});

describe("the process runner", () => {
  test(
    "an uncaught error is printed redacted and escaped, with exit code 1",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      // A preload that makes every write to stdout throw: main() then rejects with that error.
      const preload = `data:text/javascript,${encodeURIComponent(
        'process.stdout.write = () => { throw new Error("boom at https://bob:hunter2@h.test/m?key=zzz-secret \\u001b[2J\\nerror[FAKE]"); };',
      )}`;
      const run = start(process.execPath, ["--import", preload, CLI, "--version"]);
      const result = await run.done;
      assert.equal(result.code, 1, result.stderr);
      assert.match(
        result.stderr,
        /^error\[ERR_HUBCACHE_INTERNAL\]: boom at https:\/\/\*\*\*@h\.test\/m\?key=REDACTED/,
      );
      assert.doesNotMatch(result.stderr, /hunter2|zzz-secret/);
      assert.doesNotMatch(result.stderr, RAW_CONTROL);
      assert.doesNotMatch(result.stderr, /^error\[FAKE\]/m);
    },
  );
});

describe("retries are shown", () => {
  test(
    "a stderr that is no terminal gets one plain line per retry",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const sandbox = await makeSandbox();
      try {
        const run = startCli(["resolve", "--cache-dir", sandbox.cacheDir, host.url("/flaky/1")]);
        const result = await run.done;
        assert.equal(result.code, 0, result.stderr);
        const lines = result.stderr.split("\n").filter(Boolean);
        assert.equal(lines.length, 2, result.stderr);
        assert.match(
          lines[0] ?? "",
          /^retry 1( of 5)?: http:\/\/127\.0\.0\.1:\d+\/flaky\/1 in 0 ms \(.*503.*\); /,
        );
        assert.match(lines[1] ?? "", /^retry 2( of 5)?: /);
      } finally {
        await sandbox.cleanup();
      }
    },
  );

  test("a terminal shows each retry above the progress bar", { timeout: TEST_TIMEOUT_MS }, async (t) => {
    if (spawnSync("script", ["--version"]).status !== 0) {
      t.skip("util-linux `script` is needed to give the CLI a terminal");
      return;
    }
    const sandbox = await makeSandbox();
    try {
      // `script` runs the CLI on a pseudo-terminal: stdout and stderr both reach us through it.
      const command = `${process.execPath} ${CLI} resolve --cache-dir ${sandbox.cacheDir} ${host.url("/flaky-tty/1")}`;
      const run = start("script", ["-qec", command, "/dev/null"]);
      const result = await run.done;
      assert.equal(result.code, 0, result.stdout);
      assert.match(result.stdout, /retry 1( of 5)?: http:\/\/127\.0\.0\.1:\d+\/flaky-tty\/1 in 0 ms \(.*503/);
      assert.match(result.stdout, /retry 2( of 5)?: /);
    } finally {
      await sandbox.cleanup();
    }
  });
});
