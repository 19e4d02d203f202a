/**
 * load() on the cpu backend. The cpu backend is slow (movenet takes seconds per run on a shared
 * machine), so inputs stay tiny: the layers model runs on a 4x4 image, and for the graph model
 * every weight is compared bit for bit and the first convolution is run on real input.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import * as converter from "@tensorflow/tfjs-converter";
import * as layers from "@tensorflow/tfjs-layers";
import { load } from "hubcache";
import { tempDir } from "./helpers/fixtures.js";
import { type LoadHub, startLoadHub } from "./helpers/load-hub.js";
import { input, maxAbsDiff, run, tf, useBackend, weightValues } from "./helpers/tfjs.js";

/** Per-test limit: a hang fails the test instead of the run (generous: the machine is shared). */
const LIMIT = { timeout: 180_000 };

let hub: LoadHub;
before(async () => {
  await useBackend("cpu");
  hub = await startLoadHub();
});
after(() => hub.hub.close());

const FIRST_CONV =
  "StatefulPartitionedCall/center_net_mobile_net_v2fpn_feature_extractor/model_1/model/Conv1_relu/Relu6";

test(
  "cpu: graph model weights are bit-identical to TF.js's own load, and the first layer agrees",
  LIMIT,
  async () => {
    const model = await load(hub.handle("movenet"), { cacheDir: await tempDir() });
    assert.equal(tf.getBackend(), "cpu");
    assert.ok(model instanceof converter.GraphModel);
    const direct = await converter.loadGraphModel(hub.handle("movenet"), { fromTFHub: true });
    const ours = await weightValues(model);
    const theirs = await weightValues(direct);
    assert.equal(ours.size, theirs.size);
    assert.ok(ours.size > 100);
    for (const [name, values] of theirs) assert.deepEqual(ours.get(name), values, name);

    const x = input([1, 192, 192, 3], "int32", 255);
    const got = await run(model, x, FIRST_CONV);
    const expected = await run(direct, x, FIRST_CONV);
    assert.equal(got.length, 96 * 96 * 32);
    assert.ok(maxAbsDiff(got, expected) <= 1e-5, `max diff ${maxAbsDiff(got, expected)}`);
    assert.ok(got.some((v) => v !== 0));
    model.dispose();
    direct.dispose();
    x.dispose();
  },
);

test("cpu: layers model gives the same outputs as TF.js's own load (4x4 input)", LIMIT, async () => {
  const model = await load(hub.handle("upscaler"), { cacheDir: await tempDir() });
  assert.ok(model instanceof layers.LayersModel);
  const direct = await layers.loadLayersModel(`${hub.handle("upscaler")}/model.json?tfjs-format=file`);
  const x = input([1, 4, 4, 3], "float32", 1);
  const got = await run(model, x);
  const expected = await run(direct, x);
  assert.equal(got.length, 8 * 8 * 3);
  assert.ok(maxAbsDiff(got, expected) <= 1e-5, `max diff ${maxAbsDiff(got, expected)}`);
  model.dispose();
  direct.dispose();
  x.dispose();
});
