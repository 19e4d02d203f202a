// ioHandler(handle).load() without TF.js (pages and workers): what came back, and from where.
export async function loadArtifacts(hubcache, handle, options) {
  const events = [];
  const onEvent = options.onEvent;
  options.onEvent = (event) => {
    events.push(event);
    onEvent?.(event);
  };
  try {
    const handler = hubcache.ioHandler(handle, options);
    const artifacts = await handler.load();
    const buffers = Array.isArray(artifacts.weightData) ? artifacts.weightData : [artifacts.weightData];
    return {
      ok: true,
      events,
      lastLoad: handler.lastLoad,
      weightBytes: buffers.reduce((sum, b) => sum + b.byteLength, 0),
      weights: artifacts.weightSpecs.length,
    };
  } catch (error) {
    return {
      ok: false,
      events,
      error: { name: error?.name, code: error?.code, message: String(error?.message) },
    };
  }
}
