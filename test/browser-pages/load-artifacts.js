/* global setTimeout, fetch, AbortController, navigator */
// ioHandler(handle).load() without TF.js (pages and workers): what came back, and from where.

/**
 * The options a test passes, with the page-only parts (functions) made from plain data.
 * `gateFirstFetch: NAME`: the first fetch waits for the Web Lock NAME, which the test holds (the
 * harness's closeGate/openGate): while it waits, navigator.locks.query() shows it pending, and the
 * load holds its model's lock.
 */
export function optionsOf(plain, seen) {
  const { gateFirstFetch, abortAfterMs, ...options } = plain ?? {};
  options.onEvent = (event) => seen.push(event);
  if (gateFirstFetch) {
    let first = true;
    options.fetch = async (url, init) => {
      if (first) {
        first = false;
        await navigator.locks.request(gateFirstFetch, () => undefined);
      }
      return fetch(url, init);
    };
  }
  if (abortAfterMs !== undefined) {
    const controller = new AbortController();
    setTimeout(() => controller.abort(), abortAfterMs);
    options.signal = controller.signal;
  }
  return options;
}

export async function loadArtifacts(hubcache, handle, options) {
  const events = [];
  const targetEvents = [];
  const onTarget = (event) => targetEvents.push(event.detail);
  hubcache.events.addEventListener("hubcache", onTarget);
  const onEvent = options.onEvent;
  options.onEvent = (event) => {
    events.push(event);
    onEvent?.(event);
  };
  try {
    const handler = hubcache.ioHandler(handle, options);
    const artifacts = await handler.load();
    // persist()'s answer arrives on its own time.
    for (let i = 0; options.persist && i < 50 && !events.some((e) => e.type === "persist"); i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const buffers = Array.isArray(artifacts.weightData) ? artifacts.weightData : [artifacts.weightData];
    return {
      ok: true,
      events,
      lastLoad: handler.lastLoad,
      weightBytes: buffers.reduce((sum, b) => sum + b.byteLength, 0),
      weights: artifacts.weightSpecs.length,
      targetEvents,
    };
  } catch (error) {
    return {
      ok: false,
      events,
      error: { name: error?.name, code: error?.code, message: String(error?.message) },
    };
  } finally {
    hubcache.events.removeEventListener("hubcache", onTarget);
  }
}
