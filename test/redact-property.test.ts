// Property test of redaction: random secrets, in random positions of random URLs inside random
// texts (plain or JSON-escaped), never survive redactText/redactUrl. A fixed seed makes every run
// check the same cases; a failure prints the case.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { redactText, redactUrl } from "../src/redact.js";

/** mulberry32: a small seeded PRNG, so the cases are the same on every run. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ASCII_PRINTABLE = Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)).join("");
const UNICODE = "éßøπЖ中文🙂€ñ";
const ALL = ASCII_PRINTABLE + UNICODE;

type Random = () => number;
const pick = <T>(random: Random, items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;

function randomString(random: Random, alphabet: string, min: number, max: number): string {
  const chars = [...alphabet];
  const length = min + Math.floor(random() * (max - min + 1));
  return Array.from({ length }, () => pick(random, chars)).join("");
}

/**
 * Characters a secret may hold raw at each position. Raw user info may hold anything but `/`,
 * `?` and `#`: those end the authority in every URL parser, so such a secret is user info only
 * when percent-encoded (the encoded form is tested with every character). Raw user info does not
 * end with a space either: an `@` right after a space is read as an npm scope ("needs
 * @aws-sdk/client-s3"), not as the end of user info. A raw query value
 * ends at `&`, `#`, a space, `"`, `<`, `>` or a backtick, as in any URL; a raw fragment at
 * the same characters but `&` and `#`.
 */
const without = (chars: string): string => [...ALL].filter((c) => !chars.includes(c)).join("");
const RAW = {
  user: without("/?#"),
  password: without("/?#"),
  query: without('&# "<>`'),
  fragment: without(' "<>`'),
};
type Position = keyof typeof RAW;
/** A secret that does not end with a space (see above), made so by one more letter. */
const rawSafe = (secret: string): string => (/\s$/.test(secret) ? `${secret}x` : secret);
const POSITIONS = Object.keys(RAW) as Position[];

const HOST = "models.example.com";
const PARAM_NAMES = ["key", "pwd", "pass", "token", "v", "signature", "x", "apiKey", "q"];

interface Case {
  position: Position;
  encoded: boolean;
  secret: string;
  text: string;
}

function urlWith(position: Position, value: string, random: Random): string {
  const path = pick(random, ["/m/1", "/google/yamnet/1", "/a/model.tar.gz", "/"]);
  const name = pick(random, PARAM_NAMES);
  const extra = random() < 0.5 ? "" : `&${pick(random, PARAM_NAMES)}=1`;
  switch (position) {
    case "user":
      return `https://${value}@${HOST}${path}`;
    case "password":
      return `http://${pick(random, ["bob", "u", "deploy"])}:${value}@${HOST}${path}`;
    case "query":
      return random() < 0.5
        ? `https://${HOST}${path}?${name}=${value}${extra}`
        : `https://${HOST}${path}?tf-hub-format=compressed&${name}=${value}`;
    case "fragment":
      return `https://${HOST}${path}#${value}`;
  }
}

function makeCase(random: Random): Case {
  const position = pick(random, POSITIONS);
  const encoded = random() < 0.4;
  const secret = rawSafe(randomString(random, encoded ? ALL : RAW[position], 8, 24));
  const url = urlWith(position, encoded ? encodeURIComponent(secret) : secret, random);
  const before = randomString(random, ASCII_PRINTABLE, 0, 30);
  const after = randomString(random, ASCII_PRINTABLE, 0, 30);
  const separator = (): string => pick(random, [" ", ": ", " (", '"', "\n", " at ", " <"]);
  const text = `${before}${separator()}${url}${pick(random, ["", ".", ",", ")", " ", "\n", '"'])}${separator()}${after}`;
  return { position, encoded, secret, text: random() < 0.3 ? JSON.stringify({ message: text }) : text };
}

/** Every form the secret could take in an output: raw, percent-encoded, JSON-escaped. */
function forms(secret: string): string[] {
  return [secret, encodeURIComponent(secret), JSON.stringify(secret).slice(1, -1)];
}

describe("redaction is total (property, fixed seed)", () => {
  test("random secrets in user info, passwords, query values and fragments never survive", () => {
    const random = prng(0x5eed);
    for (let i = 0; i < 5000; i++) {
      const c = makeCase(random);
      const shown = redactText(c.text);
      for (const form of forms(c.secret)) {
        assert.ok(
          !shown.includes(form),
          `case ${i} (${c.position}, encoded ${c.encoded}) leaks:\n${c.text}\n=> ${shown}`,
        );
      }
      // Still useful: the host is shown.
      assert.ok(shown.includes(HOST), `case ${i} lost the host:\n${c.text}\n=> ${shown}`);
    }
  });

  test("redactUrl on a bare URL hides the same secrets", () => {
    const random = prng(42);
    for (let i = 0; i < 2000; i++) {
      const position = pick(random, POSITIONS);
      const secret = rawSafe(randomString(random, RAW[position], 8, 24));
      const url = urlWith(position, secret, random);
      const shown = redactUrl(url);
      assert.ok(!shown.includes(secret), `case ${i} (${position}) leaks:\n${url}\n=> ${shown}`);
      assert.ok(shown.startsWith("http"), shown);
    }
  });

  test("redacting twice changes nothing more (errors redact, then the CLI again), and never throws", () => {
    const random = prng(7);
    const pieces = [...'ab:/@?#&= "\n.%x', "https://", "s3://", "***@", "REDACTED", "#"];
    for (let i = 0; i < 5000; i++) {
      const text = Array.from({ length: Math.floor(random() * 40) }, () => pick(random, pieces)).join("");
      const once = redactText(text);
      assert.equal(redactText(once), once, JSON.stringify(text));
    }
  });

  test("names stay, values go, except the values hubcache adds itself", () => {
    assert.equal(
      redactUrl("https://h.test/m?key=a1&pwd=b2&pass=c3&tf-hub-format=compressed&tfjs-format=file"),
      "https://h.test/m?key=REDACTED&pwd=REDACTED&pass=REDACTED&tf-hub-format=compressed&tfjs-format=file",
    );
  });

  test("user info with quotes, a backtick, < or a space is hidden, in text and in JSON", () => {
    for (const user of ['a"b', "a`b", "a<b", "a b:c d", "x@y:z@w"]) {
      const url = `https://${user}@h.test/m`;
      assert.equal(redactUrl(url), "https://***@h.test/m");
      assert.equal(redactText(`failed: ${url} (HTTP 404)`), "failed: https://***@h.test/m (HTTP 404)");
      assert.equal(redactText(JSON.stringify([url])), JSON.stringify(["https://***@h.test/m"]));
    }
  });

  test("a string that is no URL a parser can read hides everything between :// and @", () => {
    assert.equal(redactText("bad http://u:a?b@h.test/m"), "bad http://***@h.test/m");
    assert.equal(redactText("http://u:p:q@"), "http://***@");
  });

  test("prose that names a scheme and an npm scope on one line is left alone", () => {
    for (const text of [
      "s3:// locations need the optional package @aws-sdk/client-s3, which is not installed.",
      "gs://bucket needs @google-cloud/storage: npm install @google-cloud/storage",
      "https://tfhub.dev/m/1 needs @tensorflow/tfjs-core",
    ]) {
      assert.equal(redactText(text), text);
    }
  });
});
