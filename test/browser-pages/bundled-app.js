// An app as a bundler builds it: TF.js and hubcache/browser imported by package name (bundled by
// esbuild in test/browser-bundler.test.ts), no script tags, no globals.
/* global window */
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { loadGraphModel } from "@tensorflow/tfjs-converter";
import { ioHandler } from "hubcache/browser";

window.loadBundled = async (handle) => {
  await tf.setBackend("cpu");
  const handler = ioHandler(handle);
  const model = await loadGraphModel(handler);
  const weights = Object.keys(model.weights).length;
  model.dispose();
  return { weights, from: handler.lastLoad.from, hasGlobalTf: "tf" in window };
};
window.bundledReady = true;
