/**
 * npm run demo:browser — the browser demo on http://127.0.0.1:8808/: a page that loads movenet
 * (a real TF.js graph model, from the @vladmandic/human package) through hubcache/browser, runs
 * it, and shows whether it came from the network or the browser's storage, and how long it took.
 *
 * Offline, the "hub" is a local stand-in that speaks TF Hub's file protocol. With a running
 * `hubcache serve` mirror, pass its address (and token) to read through it instead:
 *   npm run demo:browser -- --mirror http://127.0.0.1:8080 [--token T] [--handle https://tfhub.dev/...]
 */
import path from "node:path";
import { parseArgs } from "node:util";
import { startPageServer } from "../../test/helpers/chromium.js";
import { movenetModelDir, tarGz } from "../../test/helpers/fixtures.js";
import { startHubServer } from "../../test/helpers/hub-server.js";

const MOVENET = "/google/tfjs-model/movenet/singlepose/lightning/4";
const { values } = parseArgs({
  options: {
    mirror: { type: "string" },
    token: { type: "string" },
    handle: { type: "string" },
    port: { type: "string", default: "8808" },
  },
});

const here = import.meta.dirname;
// The stand-in hub serves movenet both ways: file by file (?tfjs-format=file, what the page reads)
// and as an archive (?tfjs-format=compressed, what a hubcache serve mirror fetches upstream).
const hub = await startHubServer({ cors: true });
const dir = await movenetModelDir();
hub.add(MOVENET, { archive: await tarGz(dir), dir });
console.log(`stand-in hub: ${hub.origin} (movenet from @vladmandic/human)`);
const handle = values.handle ?? (values.mirror ? `https://tfhub.dev${MOVENET}` : hub.handle(MOVENET));
if (values.mirror && values.handle === undefined) {
  console.log(`reading https://tfhub.dev${MOVENET} through ${values.mirror}: start the mirror with`);
  const port = new URL(values.mirror).port || "80";
  console.log(`  hubcache serve --port ${port} --upstream tfhub.dev=${hub.origin}`);
}
const pages = await startPageServer(
  {},
  { "/": path.join(here, "index.html"), "/demo.js": path.join(here, "demo.js") },
  { port: Number(values.port) },
);
const query = new URLSearchParams({ handle });
if (values.mirror) query.set("mirror", values.mirror);
if (values.token) query.set("token", values.token);
console.log(`open ${pages.origin}/?${query}`);
console.log("Load, then reload the page and load again: the second load comes from the browser's storage.");
