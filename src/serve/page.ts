/** The mirror's front page: what it has cached, and how to read through it. */
import type { CacheListing } from "../manage/list.js";
import { formatSize as formatBytes } from "../units.js";

const escapeHtml = (text: string): string => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

export function indexPage(listing: CacheListing, hostHeader: string | undefined): string {
  const host = hostHeader && /^[\w.:[\]-]+$/.test(hostHeader) ? hostHeader : "MIRROR:8080";
  const mirror = `http://${host}`;
  const rows = listing.entries
    .map(
      (e) =>
        `<tr><td>${escapeHtml(e.handle ?? "(no descriptor)")}</td><td>${e.bytes === null ? "?" : formatBytes(e.bytes)}</td>` +
        `<td>${e.files ?? "?"}</td><td>${escapeHtml(e.lastUsedAt ?? "")}</td><td>${escapeHtml(e.state)}</td></tr>`,
    )
    .join("\n");
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>hubcache mirror</title>
<style>body{font:14px system-ui,sans-serif;margin:2em;max-width:70em}td,th{padding:.2em .8em;text-align:left}
code,pre{background:#f4f4f4;padding:.1em .3em}</style></head>
<body><h1>hubcache mirror</h1>
<p>Cache: <code>${escapeHtml(listing.cacheDir)}</code>, ${listing.entries.length} models, ${formatBytes(listing.totalBytes)}.</p>
<table><thead><tr><th>Handle</th><th>Size</th><th>Files</th><th>Last use</th><th>State</th></tr></thead>
<tbody>
${rows || '<tr><td colspan="5">Nothing cached yet.</td></tr>'}
</tbody></table>
<h2>Reading through this mirror</h2>
<p>A model <code>https://HOST/PATH</code> is <code>${escapeHtml(mirror)}/HOST/PATH</code> here.</p>
<pre>HUBCACHE_MIRROR=${escapeHtml(mirror)} hubcache resolve https://tfhub.dev/google/yamnet/1</pre>
<pre>tf.loadGraphModel("${escapeHtml(mirror)}/tfhub.dev/google/tfjs-model/movenet/singlepose/lightning/4", {fromTFHub: true})</pre>
<pre>hub.load("${escapeHtml(mirror)}/tfhub.dev/google/yamnet/1")   # Python tensorflow_hub</pre>
<p>Forms: <code>?tf-hub-format=compressed</code> (a tar), <code>?tf-hub-format=uncompressed</code> (303 to its files),
<code>HANDLE/FILE?tfjs-format=file</code> (one file). <a href="/" type="application/json">JSON</a>: send <code>Accept: application/json</code>.</p>
</body></html>
`;
}
