/**
 * TensorFlow.js for the load tests: pick a backend for this test process, run models, compare
 * outputs. Each test file is its own process, so each file picks its backend once.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { GraphModel } from "@tensorflow/tfjs-converter";
import type { LayersModel } from "@tensorflow/tfjs-layers";

export { tf };

export async function useBackend(name: "cpu" | "wasm"): Promise<void> {
  if (name === "cpu") await import("@tensorflow/tfjs-backend-cpu");
  else await import("@tensorflow/tfjs-backend-wasm");
  const ok = await tf.setBackend(name);
  if (!ok || tf.getBackend() !== name) throw new Error(`the ${name} backend did not start`);
  const cpu = tf.findBackend("cpu") as (tf.KernelBackend & { firstUse?: boolean }) | null;
  if (cpu && "firstUse" in cpu) cpu.firstUse = false;
}

/** A deterministic pseudo-random input. */
export function input(shape: number[], dtype: "int32" | "float32", max: number): tf.Tensor {
  const size = shape.reduce((a, b) => a * b, 1);
  let seed = 2654435761;
  const values = Array.from({ length: size }, () => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return dtype === "int32" ? seed % (max + 1) : (seed / 0xffffffff) * max;
  });
  return tf.tensor(values, shape, dtype);
}

/** Run a model (or one node of a graph model) and return the values. */
export async function run(
  model: GraphModel | LayersModel,
  x: tf.Tensor,
  node?: string,
): Promise<Float32Array | Int32Array | Uint8Array> {
  const y = (
    node !== undefined && "execute" in model ? model.execute(x, node) : model.predict(x)
  ) as tf.Tensor;
  const values = await y.data<"float32" | "int32" | "bool">();
  y.dispose();
  return values;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs((a[i] ?? 0) - (b[i] ?? 0)));
  return max;
}

/** Every weight of a model by name, as plain arrays (to compare two loads bit for bit). */
export async function weightValues(model: GraphModel | LayersModel): Promise<Map<string, number[]>> {
  const out = new Map<string, number[]>();
  if ("weights" in model && !Array.isArray(model.weights)) {
    for (const [name, tensors] of Object.entries(model.weights)) {
      const t = tensors[0];
      if (t) out.set(name, Array.from(await t.data()));
    }
  } else {
    for (const w of (model as LayersModel).weights) {
      out.set(w.originalName, Array.from(await w.read().data()));
    }
  }
  return out;
}
