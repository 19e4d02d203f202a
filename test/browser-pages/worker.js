// A module worker that loads one model's artifacts through hubcache (Cache Storage and Web Locks
// are shared with the origin's pages), then reports back.
/* global self */
import * as hubcache from "/hubcache/browser.js";
import { loadArtifacts, optionsOf } from "/pages/load-artifacts.js";

self.onmessage = async (message) => {
  const { handle, options } = message.data;
  self.postMessage(await loadArtifacts(hubcache, handle, optionsOf(options, [])));
};
