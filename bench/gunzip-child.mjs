// The physical limit of a cold resolve: download the archive (http.get, following the redirect)
// and gunzip it into a null sink, nothing written. gunzip gets 1 MiB output chunks, as hubcache's
// does: with zlib's default 16 KiB it is slower than a whole cold resolve. Prints {"ms": wall ms}.
import http from "node:http";
import { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { URL } from "node:url";
import zlib from "node:zlib";

const [url] = process.argv.slice(2);
if (!url) throw new Error("usage: gunzip-child.mjs URL");
const get = (target) => new Promise((resolve, reject) => http.get(target, resolve).on("error", reject));
const started = performance.now();
let response = await get(url);
// The host answers 302 to its storage URL, as tfhub.dev does: follow it, as resolve() does.
for (let hops = 0; response.statusCode >= 300 && response.statusCode < 400 && hops < 5; hops++) {
  response.resume();
  response = await get(new URL(response.headers.location, url).href);
}
if (response.statusCode !== 200) throw new Error(`HTTP ${response.statusCode}`);
const sink = new Writable({ write: (_chunk, _encoding, callback) => callback() });
await pipeline(response, zlib.createGunzip({ chunkSize: 1 << 20 }), sink);
console.log(JSON.stringify({ ms: performance.now() - started }));
