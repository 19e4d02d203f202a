/**
 * TensorFlow.js is an optional peer: imported only when a model is loaded, and when it is missing
 * the error names the exact `npm install` command. The backend (cpu, wasm, ...) is the user's pick.
 */
import type * as TfConverter from "@tensorflow/tfjs-converter";
import type * as TfCore from "@tensorflow/tfjs-core";
import type * as TfLayers from "@tensorflow/tfjs-layers";
import { ErrorCode, HubcacheError, errnoCode } from "../errors.js";
import type { TfjsModelFormat } from "./model-json.js";

export const TFJS_CORE = "@tensorflow/tfjs-core";
export const TFJS_CONVERTER = "@tensorflow/tfjs-converter";
export const TFJS_LAYERS = "@tensorflow/tfjs-layers";
const BACKENDS = [
  "@tensorflow/tfjs-backend-cpu",
  "@tensorflow/tfjs-backend-wasm",
  "@tensorflow/tfjs-backend-webgl",
  "@tensorflow/tfjs-backend-webgpu",
  "@tensorflow/tfjs-node",
  "@tensorflow/tfjs",
];
const DEFAULT_BACKEND = "@tensorflow/tfjs-backend-cpu";

export type TfCoreModule = typeof TfCore;
export type TfConverterModule = typeof TfConverter;
export type TfLayersModule = typeof TfLayers;

export type TfjsModules =
  | { format: "graph-model"; tf: TfCoreModule; converter: TfConverterModule }
  | { format: "layers-model"; tf: TfCoreModule; layers: TfLayersModule };

/** The package a "cannot find" error is about (it may be a dependency of the one imported). */
function missingPackage(error: unknown): string | undefined {
  const code = errnoCode(error);
  if (code !== "ERR_MODULE_NOT_FOUND" && code !== "MODULE_NOT_FOUND") return undefined;
  const message = error instanceof Error ? error.message : String(error);
  return /Cannot find (?:package|module) '((?:@[^/']+\/)?[^/']+)/.exec(message)?.[1];
}

/** Is a package resolvable from hubcache's own location (without loading it)? */
function installed(name: string): boolean {
  try {
    import.meta.resolve(name);
    return true;
  } catch {
    return false;
  }
}

function peerMissingError(format: TfjsModelFormat, missing: string[], cause: unknown): HubcacheError {
  const needsBackend = missing.includes(TFJS_CORE) && !BACKENDS.some(installed);
  const install = [...missing, ...(needsBackend ? [DEFAULT_BACKEND] : [])];
  const kind = format === "graph-model" ? "graph model" : "layers model";
  return new HubcacheError(
    ErrorCode.MISSING_DEPENDENCY,
    `Loading a TF.js ${kind} needs ${missing.join(" and ")}, which ${missing.length === 1 ? "is" : "are"} not installed (TensorFlow.js is an optional peer dependency of hubcache).`,
    {
      hint:
        `Run: npm install ${install.join(" ")}` +
        (needsBackend
          ? ` (then import "${DEFAULT_BACKEND}" once in your program, or use the faster @tensorflow/tfjs-backend-wasm).`
          : "."),
      cause,
    },
  );
}

/** Import what a model of this format needs: tfjs-core plus tfjs-converter (graph) or tfjs-layers. */
export async function importTfjs(format: TfjsModelFormat): Promise<TfjsModules> {
  const second = format === "graph-model" ? TFJS_CONVERTER : TFJS_LAYERS;
  const attempts = await Promise.allSettled([
    import("@tensorflow/tfjs-core"),
    format === "graph-model" ? import("@tensorflow/tfjs-converter") : import("@tensorflow/tfjs-layers"),
  ]);
  const missing = new Set<string>();
  let firstCause: unknown;
  for (const [index, attempt] of attempts.entries()) {
    if (attempt.status === "fulfilled") continue;
    const name = missingPackage(attempt.reason);
    if (name === undefined) throw attempt.reason;
    // The package itself, or a package it needs (tfjs-converter without tfjs-core).
    missing.add(index === 0 ? TFJS_CORE : name === TFJS_CORE ? TFJS_CORE : second);
    firstCause ??= attempt.reason;
  }
  if (missing.size > 0) throw peerMissingError(format, [...missing], firstCause);
  const [core, other] = attempts as [
    PromiseFulfilledResult<TfCoreModule>,
    PromiseFulfilledResult<TfConverterModule | TfLayersModule>,
  ];
  const tf = core.value;
  await requireBackend(tf);
  return format === "graph-model"
    ? { format, tf, converter: other.value as TfConverterModule }
    : { format, tf, layers: other.value as TfLayersModule };
}

/**
 * Make sure a backend is registered and ready. Importing TF.js without a backend works, and the
 * first operation then throws "No backend found in registry"; say what to do instead.
 */
export async function requireBackend(tf: TfCoreModule): Promise<void> {
  try {
    await tf.ready();
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    if (!/no backend found/i.test(message)) throw error;
    const available = BACKENDS.filter(installed);
    throw new HubcacheError(
      ErrorCode.NO_BACKEND,
      "TensorFlow.js has no backend registered to run the model.",
      {
        hint:
          available.length > 0
            ? `Import one before load(): import "${available[0]}" (installed).`
            : `Install and import one: npm install ${DEFAULT_BACKEND}, then import "${DEFAULT_BACKEND}" before load() (or @tensorflow/tfjs-backend-wasm, faster).`,
        cause: error,
      },
    );
  }
  silenceNodeBanner(tf);
}

/**
 * The cpu backend prints "Hi, looks like you are running TensorFlow.js in Node.js..." on first use,
 * advising tfjs-node. hubcache never prints, so turn that banner off (only it: no global flag is
 * touched). It relies on a private field, hence the guard.
 */
export function silenceNodeBanner(tf: TfCoreModule): void {
  try {
    const cpu = tf.findBackend("cpu") as (TfCore.KernelBackend & { firstUse?: boolean }) | null;
    if (cpu && "firstUse" in cpu) cpu.firstUse = false;
  } catch {
    // Not the cpu backend, or a different TF.js: nothing to silence.
  }
}
