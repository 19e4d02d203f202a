/* global window, caches, crypto, navigator, Response, Worker */
// The test harness: hubcache's browser bundle next to TF.js from script tags, and the few
// functions the tests call through page.evaluate (window.harness).
import * as hubcache from "/hubcache/browser.js";
import { loadArtifacts, optionsOf } from "/pages/load-artifacts.js";

const tf = globalThis.tf;

/** The same deterministic input as test/helpers/tfjs.ts `input(shape, dtype, max)`. */
function input(shape, dtype, max) {
  const size = shape.reduce((a, b) => a * b, 1);
  let seed = 2654435761;
  const values = Array.from({ length: size }, () => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return dtype === "int32" ? seed % (max + 1) : (seed / 0xffffffff) * max;
  });
  return tf.tensor(values, shape, dtype);
}

async function outputs(model, x, node) {
  if (node === "count") {
    // Loaded, not run: the number of weight tensors.
    x.dispose();
    const count = Object.keys(model.weights).length;
    model.dispose();
    return [count];
  }
  if (node === "weights") {
    // No run (the cpu backend is slow): what was loaded, as every weight's element count and sum.
    x.dispose();
    const sums = Object.entries(model.weights).map(
      ([name, [t]]) => `${name}:${t.size}:${tf.sum(t).dataSync()[0]}`,
    );
    model.dispose();
    return sums;
  }
  const y = node === undefined ? model.predict(x) : model.execute(x, node);
  const values = Array.from(await y.data());
  y.dispose();
  x.dispose();
  model.dispose();
  return values;
}

/** Run movenet's first convolution (or the upscaler on a 4x4 image) on a model from `source`. */
async function run(kind, source, node) {
  await tf.setBackend("cpu");
  if (kind === "graph") {
    return outputs(await tf.loadGraphModel(source), input([1, 192, 192, 3], "int32", 255), node);
  }
  return outputs(await tf.loadLayersModel(source), input([1, 4, 4, 3], "float32", 1), undefined);
}

function errorOf(error) {
  return {
    name: error?.name,
    code: error?.code,
    message: String(error?.message ?? error),
    hint: error?.hint,
  };
}

window.harness = {
  /** Load (and run) a model through hubcache's IOHandler: outputs, events, where it came from. */
  async load(kind, handle, plainOptions, node) {
    const events = [];
    try {
      const handler = hubcache.ioHandler(handle, optionsOf(plainOptions, events));
      const values = await run(kind, handler, node);
      return { ok: true, values, events, lastLoad: handler.lastLoad };
    } catch (error) {
      return { ok: false, error: errorOf(error), events };
    }
  },
  /** Only the IOHandler's load() (no TF.js), in this page or, with `inWorker`, in a new module worker. */
  async artifactsOnly(handle, plainOptions, inWorker) {
    if (inWorker) {
      const worker = new Worker("/pages/worker.js", { type: "module" });
      const answer = new Promise((resolve) => (worker.onmessage = (message) => resolve(message.data)));
      worker.postMessage({ handle, options: plainOptions });
      const result = await answer;
      worker.terminate();
      return result;
    }
    return loadArtifacts(hubcache, handle, optionsOf(plainOptions, []));
  },
  /** The same model through TF.js's own http loader, from a plain static folder. */
  direct(kind, url, node) {
    return run(kind, url, node);
  },
  /** hubcache's ModelArtifacts next to TF.js's http loader's, as comparable data. */
  async artifacts(handle, url) {
    const describe = (artifacts) => {
      const { weightData, ...rest } = artifacts;
      const buffers = Array.isArray(weightData) ? weightData : [weightData];
      return { keys: Object.keys(artifacts).sort(), rest: JSON.stringify(rest), buffers };
    };
    const digests = async (buffers) =>
      Promise.all(
        buffers.map(async (b) => [
          b.byteLength,
          Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", b))),
        ]),
      );
    const ours = describe(await hubcache.ioHandler(handle).load());
    const theirs = describe(await tf.io.http(url).load());
    ours.buffers = await digests(ours.buffers);
    theirs.buffers = await digests(theirs.buffers);
    return { ours, theirs };
  },
  async cachedModels() {
    return (await hubcache.cachedModels()).map((m) => ({
      handle: m.handle,
      bytes: m.bytes,
      storedAt: m.storedAt.getTime(),
      lastUsed: m.lastUsed.getTime(),
    }));
  },
  removeModel: (handle) => hubcache.removeModel(handle),
  clearModels: () => hubcache.clearModels(),
  /** Every Cache Storage cache of this origin, with its keys. */
  async storage() {
    const out = {};
    for (const name of await caches.keys()) {
      out[name] = (await (await caches.open(name)).keys()).map((r) => r.url);
    }
    return out;
  },
  /** Damage a stored file: same size, one byte changed (or, with `drop`, remove a key). */
  async damage(handle, file, how) {
    const cache = await caches.open(`hubcache:v1:${handle}`);
    const key = (await cache.keys()).find((r) => r.url.endsWith(`/${file}`));
    if (!key) throw new Error(`no stored ${file}`);
    if (how === "drop") return cache.delete(key);
    const bytes = new Uint8Array(await (await cache.match(key)).arrayBuffer());
    bytes[bytes.length >> 1] ^= 0xff;
    await cache.put(key, new Response(bytes));
    return true;
  },
  estimate: () => navigator.storage.estimate(),
  /** Take the Web Lock `name` and hold it until openGate(name) (a gate for gateFirstFetch). */
  closeGate(name) {
    return new Promise((held) => {
      void navigator.locks.request(name, () => {
        held();
        return new Promise((open) => (gates[name] = open));
      });
    });
  },
  openGate(name) {
    gates[name]?.();
    delete gates[name];
  },
  /** The names of the origin's Web Locks held and waited for (every tab and worker). */
  async locks() {
    const { held = [], pending = [] } = await navigator.locks.query();
    return { held: held.map((l) => l.name), pending: pending.map((l) => l.name) };
  },
};
const gates = {};
window.harnessReady = true;
