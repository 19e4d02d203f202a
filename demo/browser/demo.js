// The demo page's script: load a model through hubcache/browser, run it, say where it came from.
/* global document, location, tf, URLSearchParams */
import { cachedModels, ioHandler, removeModel } from "/hubcache/browser.js";

const params = new URLSearchParams(location.search);
const handle = params.get("handle");
const mirror = params.get("mirror") ?? undefined;
const token = params.get("token") ?? undefined;
const $ = (id) => document.getElementById(id);
$("handle").textContent = handle;
$("via").textContent = mirror ? `the hubcache serve mirror ${mirror}` : "the hub itself (?tfjs-format=file)";

async function showModels() {
  const rows = (await cachedModels()).map(
    (m) =>
      `<tr><td>${m.handle}</td><td>${m.bytes.toLocaleString()}</td>` +
      `<td>${m.storedAt.toLocaleTimeString()}</td><td>${m.lastUsed.toLocaleTimeString()}</td></tr>`,
  );
  $("models").innerHTML = rows.join("") || '<tr><td colspan="4">none</td></tr>';
}

/** A synthetic 192x192 RGB picture (the demo runs offline): movenet answers 17 keypoints for it. */
function picture() {
  // Functional ops only: tf-core's script-tag bundle has no chained ops (tensor.reshape(...)).
  return tf.tidy(() => {
    const y = tf.tile(tf.reshape(tf.linspace(0, 1, 192), [192, 1, 1]), [1, 192, 1]);
    const x = tf.tile(tf.reshape(tf.linspace(0, 1, 192), [1, 192, 1]), [192, 1, 1]);
    const rgb = tf.concat([tf.mul(x, y), y, x], 2);
    return tf.expandDims(tf.cast(tf.mul(rgb, 255), "int32"), 0);
  });
}

async function loadAndRun() {
  $("load").disabled = true;
  $("status").textContent = "Loading…";
  const handler = ioHandler(handle, {
    mirror,
    token,
    onProgress: (fraction) => ($("progress").value = fraction),
    onEvent: (event) => {
      if (event.type === "store-failed") $("result").textContent = `Not kept in storage: ${event.message}`;
    },
  });
  try {
    await tf.setBackend("cpu");
    const model = await tf.loadGraphModel(handler);
    const report = handler.lastLoad;
    $("progress").value = 1;
    const where =
      report.from === "storage"
        ? '<span class="storage">from the browser’s storage (no request)</span>'
        : '<span class="network">from the network</span>';
    $("status").innerHTML =
      `Loaded ${where} in ${report.ms.toFixed(0)} ms: ${report.bytes.toLocaleString()} bytes${
        report.from === "network" ? (report.stored ? ", now kept for the next page load" : ", not kept") : ""
      }.`;
    const started = performance.now();
    const input = picture();
    const output = model.execute(input);
    const keypoints = await output.array();
    const ms = performance.now() - started;
    const best = keypoints[0][0].map(([, , score]) => score).sort((a, b) => b - a)[0];
    $("result").textContent =
      `Ran it in ${ms.toFixed(0)} ms: ${keypoints[0][0].length} keypoints, best score ${best.toFixed(3)}.`;
    tf.dispose([input, output]);
    model.dispose();
  } catch (error) {
    $("status").textContent = `${error.code ?? error.name}: ${error.message}`;
  } finally {
    // The list of kept models first: the button coming back says everything on the page is final.
    await showModels();
    $("load").disabled = false;
  }
}

$("load").addEventListener("click", loadAndRun);
$("reload").addEventListener("click", () => location.reload());
$("remove").addEventListener("click", async () => {
  await removeModel(handle);
  $("status").textContent = "Removed: the next load downloads it again.";
  await showModels();
});
void showModels();
