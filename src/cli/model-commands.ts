/**
 * `hubcache info` and `hubcache load`: thin wrappers over `modelInfo` and `load`. They parse
 * flags, call the library, and print.
 */
import { parseArgs } from "node:util";
import type * as TfCore from "@tensorflow/tfjs-core";
import { ErrorCode, HubcacheError } from "../errors.js";
import { type ModelInfo, type TensorInfo, modelInfo } from "../load/info.js";
import { load } from "../load/load.js";
import {
  EXIT_FAILURE,
  EXIT_OK,
  type Output,
  errorJson,
  formatBytes,
  formatError,
  printable,
  usageError,
} from "./output.js";
import { redactUrl } from "../redact.js";
import { CACHE_FLAGS_HELP, CACHE_FLAG_OPTIONS, type CommandContext, cacheOptions } from "./cache-flags.js";

export const INFO_HELP = `Usage: hubcache info [flags] HANDLE...

Describes each model: its kind (TF.js graph or layers model, SavedModel), inputs and outputs with
dtypes and shapes (from model.json), weights, files and size. The model is downloaded into the
cache first if needed (as "hubcache resolve" does); with --load-format UNCOMPRESSED, TF.js handles
are read file by file from the host, writing nothing. TensorFlow.js is not needed.

Flags:
${CACHE_FLAGS_HELP}
  --json                     print a JSON array of model descriptions (or {handle, error})

Environment: as for "hubcache resolve" (run "hubcache resolve --help").

Exit codes: 0 success, 1 a handle failed, 2 bad usage, 130/143 stopped by SIGINT/SIGTERM.
`;

export const LOAD_HELP = `Usage: hubcache load [flags] HANDLE

Smoke test: loads the TF.js model with load() (as a program would), runs it once on zeros, and
prints the model class, output shapes and timings. Needs the TensorFlow.js packages
(@tensorflow/tfjs-core, -converter or -layers, and the chosen backend). The model is cached as
"hubcache resolve" does; with --load-format UNCOMPRESSED, TF.js handles are read file by file
from the host, writing nothing.

Flags:
${CACHE_FLAGS_HELP}
  --backend NAME             cpu | wasm (default: wasm when installed, else cpu)
  --input-shape DIMS         e.g. 1,192,192,3: the input's shape (default: from model.json,
                             unknown dimensions taken as 1); repeat for several inputs
  --no-run                   load only, do not run the model

Environment: as for "hubcache resolve" (run "hubcache resolve --help").
`;

/** The flags of `info` and `load` beyond the cache flags: each command takes only its own. */
const OWN_FLAG_OPTIONS = {
  info: { json: { type: "boolean" } },
  load: {
    backend: { type: "string" },
    "input-shape": { type: "string", multiple: true },
    "no-run": { type: "boolean" },
  },
} as const;

const FLAG_OPTIONS = { ...CACHE_FLAG_OPTIONS, ...OWN_FLAG_OPTIONS.info, ...OWN_FLAG_OPTIONS.load } as const;

/** Every flag each command takes (its --help lists them all). */
export const COMMAND_FLAGS = {
  info: Object.keys({ ...CACHE_FLAG_OPTIONS, ...OWN_FLAG_OPTIONS.info }),
  load: Object.keys({ ...CACHE_FLAG_OPTIONS, ...OWN_FLAG_OPTIONS.load }),
} as const;

type Flags = ReturnType<typeof parseArgs<{ options: typeof FLAG_OPTIONS; allowPositionals: true }>>["values"];

/** The command's flags and handles, or the exit code when it is done already (--help, a usage error). */
function parse(
  command: "info" | "load",
  args: readonly string[],
  out: Output,
  help: string,
): { values: Flags; positionals: string[] } | number {
  let parsed: { values: Flags; positionals: string[] };
  try {
    parsed = parseArgs({ args: [...args], allowPositionals: true, options: FLAG_OPTIONS });
  } catch (error) {
    return usageError(error instanceof Error ? error.message : String(error), out, command);
  }
  const other = command === "info" ? "load" : "info";
  const foreign = Object.keys(OWN_FLAG_OPTIONS[other]).find(
    (name) => parsed.values[name as keyof Flags] !== undefined,
  );
  if (foreign !== undefined) {
    return usageError(
      `--${foreign} is a flag of "hubcache ${other}", not of "hubcache ${command}".`,
      out,
      command,
    );
  }
  if (parsed.values.help) {
    out.stdout(help);
    return EXIT_OK;
  }
  return parsed;
}

const KIND_NAMES: Record<ModelInfo["kind"], string> = {
  "graph-model": "TF.js graph model (tfjs-converter)",
  "layers-model": "TF.js layers model (tfjs-layers)",
  "saved-model": "TensorFlow SavedModel (not loadable by TF.js)",
  "tf1-hub-module": "TF1 Hub module (not loadable by TF.js)",
  unknown: "unknown (no model.json)",
};

const shapeText = (shape: TensorInfo["shape"]): string =>
  shape === undefined ? "?" : `[${shape.map((d) => (d === null ? "?" : String(d))).join(",")}]`;

export function formatInfo(info: ModelInfo): string {
  const lines: string[] = [];
  const row = (key: string, value: string): void => {
    lines.push(`${key.padEnd(10)} ${printable(value)}`);
  };
  row("handle", redactUrl(info.handle));
  row("kind", KIND_NAMES[info.kind]);
  row("location", info.location);
  if (info.generatedBy || info.convertedBy) {
    row("made by", [info.generatedBy, info.convertedBy].filter(Boolean).join(", converted by "));
  }
  const tensors = (list: TensorInfo[]): string[] => {
    const width = Math.max(...list.map((t) => t.name.length));
    return list.map((t) => `${t.name.padEnd(width)}  ${(t.dtype ?? "?").padEnd(7)}  ${shapeText(t.shape)}`);
  };
  if (info.kind === "graph-model" || info.kind === "layers-model") {
    for (const [key, list] of [
      ["inputs", info.inputs],
      ["outputs", info.outputs],
    ] as const) {
      const rows = tensors(list);
      if (rows.length === 0) row(key, "(not described in model.json)");
      rows.forEach((text, i) => row(i === 0 ? key : "", text));
    }
    const { weights } = info;
    row(
      "weights",
      `${weights.tensors} tensors${weights.bytes === undefined ? "" : `, ${formatBytes(weights.bytes)}`} in ${weights.files} file${weights.files === 1 ? "" : "s"}`,
    );
  }
  row(
    "size",
    info.totalBytes === undefined
      ? `unknown (read remotely), ${info.files.length} files`
      : `${formatBytes(info.totalBytes)} in ${info.files.length} file${info.files.length === 1 ? "" : "s"}`,
  );
  const shown = info.files.slice(0, 20).map((f) => ({ path: printable(f.path), size: f.size }));
  const width = Math.max(0, ...shown.map((f) => f.path.length));
  lines.push("files");
  for (const file of shown) {
    lines.push(
      `  ${file.path.padEnd(width)}  ${file.size === undefined ? "" : formatBytes(file.size)}`.trimEnd(),
    );
  }
  if (info.files.length > shown.length) lines.push(`  ... and ${info.files.length - shown.length} more`);
  if (info.note) lines.push("", `note: ${printable(info.note)}`);
  return `${lines.join("\n")}\n`;
}

export async function infoCommand(
  args: readonly string[],
  out: Output,
  context: CommandContext,
): Promise<number> {
  const parsed = parse("info", args, out, INFO_HELP);
  if (typeof parsed === "number") return parsed;
  const { values, positionals } = parsed;
  if (positionals.length === 0) return usageError("info needs at least one HANDLE.", out, "info");
  const setup = cacheOptions(values, out, context);
  if (typeof setup === "string") return usageError(setup, out, "info");
  const results = await Promise.allSettled(positionals.map((handle) => modelInfo(handle, setup.options)));
  setup.stop();
  const failed = results.some((r) => r.status === "rejected");
  if (values.json) {
    const rows = results.map((r, i) =>
      r.status === "fulfilled"
        ? { ...r.value, handle: redactUrl(r.value.handle) }
        : { handle: redactUrl(positionals[i] ?? ""), error: errorJson(r.reason) },
    );
    out.stdout(`${JSON.stringify(rows, null, 2)}\n`);
    return failed ? EXIT_FAILURE : EXIT_OK;
  }
  const blocks: string[] = [];
  for (const r of results) {
    if (r.status === "fulfilled") blocks.push(formatInfo(r.value));
    else out.stderr(formatError(r.reason, context.signal));
  }
  out.stdout(blocks.join("\n"));
  return failed ? EXIT_FAILURE : EXIT_OK;
}

function parseShape(text: string): number[] | undefined {
  const dims = text
    .split(/[,x ]+/)
    .filter(Boolean)
    .map(Number);
  return dims.length > 0 && dims.every((d) => Number.isInteger(d) && d > 0) ? dims : undefined;
}

export async function loadCommand(
  args: readonly string[],
  out: Output,
  context: CommandContext,
): Promise<number> {
  const parsed = parse("load", args, out, LOAD_HELP);
  if (typeof parsed === "number") return parsed;
  const { values, positionals } = parsed;
  if (positionals.length !== 1) return usageError("load needs exactly one HANDLE.", out, "load");
  const backend = values.backend;
  if (backend !== undefined && backend !== "cpu" && backend !== "wasm") {
    return usageError(`--backend must be cpu or wasm, not "${backend}".`, out, "load");
  }
  const shapes = (values["input-shape"] ?? []).map(parseShape);
  if (shapes.some((s) => s === undefined)) {
    return usageError("--input-shape takes positive integers: 1,192,192,3.", out, "load");
  }
  const setup = cacheOptions(values, out, context);
  if (typeof setup === "string") return usageError(setup, out, "load");
  const opts = setup.options;
  const handle = positionals[0] ?? "";
  try {
    const tf = await startBackend(backend);
    const started = performance.now();
    const model = await load(handle, opts);
    setup.stop();
    const loadMs = performance.now() - started;
    out.stdout(
      printable(`loaded    ${model.constructor.name} on ${tf.getBackend()} in ${loadMs.toFixed(0)} ms`) +
        "\n",
    );
    if (!values["no-run"]) {
      const { onEvent: _quiet, ...withoutEvents } = opts;
      const info = await modelInfo(handle, withoutEvents);
      const inputs = info.inputs.map((t, i) => ({
        shape: shapes[i] ?? t.shape?.map((d) => d ?? 1),
        dtype: t.dtype === "int32" ? ("int32" as const) : ("float32" as const),
      }));
      if (inputs.length === 0 || inputs.some((t) => t.shape === undefined)) {
        throw new HubcacheError(ErrorCode.INVALID_MODEL, "model.json does not give every input's shape.", {
          handle,
          hint: "Pass --input-shape (e.g. --input-shape 1,224,224,3), or --no-run.",
        });
      }
      const xs = inputs.map((t) => tf.zeros(t.shape ?? [], t.dtype));
      const runStart = performance.now();
      const [first] = xs;
      const result = model.predict(xs.length === 1 && first ? first : xs);
      const ys: TfCore.Tensor[] = Array.isArray(result)
        ? result
        : result instanceof tf.Tensor
          ? [result]
          : Object.values(result);
      for (const y of ys) await y.data();
      const runMs = performance.now() - runStart;
      out.stdout(
        `ran once  in ${runMs.toFixed(0)} ms, outputs ${ys.map((y) => `[${y.shape.join(",")}]`).join(" ")}\n`,
      );
      tf.dispose([...xs, ...ys]);
    }
    model.dispose();
    return EXIT_OK;
  } catch (error) {
    setup.stop();
    out.stderr(formatError(error, context.signal));
    return EXIT_FAILURE;
  }
}

/** Import and start a backend: the CLI is a program, so it picks one (the library never does). */
async function startBackend(name: "cpu" | "wasm" | undefined): Promise<typeof TfCore> {
  let tf: typeof TfCore;
  try {
    tf = await import("@tensorflow/tfjs-core");
  } catch (cause) {
    throw new HubcacheError(
      ErrorCode.MISSING_DEPENDENCY,
      "hubcache load needs TensorFlow.js, which is not installed.",
      {
        hint: "Run: npm install @tensorflow/tfjs-core @tensorflow/tfjs-converter @tensorflow/tfjs-layers @tensorflow/tfjs-backend-wasm",
        cause,
      },
    );
  }
  const candidates = name === undefined ? (["wasm", "cpu"] as const) : [name];
  for (const candidate of candidates) {
    try {
      if (candidate === "wasm") await import("@tensorflow/tfjs-backend-wasm");
      else await import("@tensorflow/tfjs-backend-cpu");
    } catch (cause) {
      if (name !== undefined || candidate === "cpu") {
        throw new HubcacheError(ErrorCode.MISSING_DEPENDENCY, `The ${candidate} backend is not installed.`, {
          hint: `Run: npm install @tensorflow/tfjs-backend-${candidate}`,
          cause,
        });
      }
      continue;
    }
    if (await tf.setBackend(candidate)) return tf;
  }
  throw new HubcacheError(ErrorCode.NO_BACKEND, "No TensorFlow.js backend could start.", {
    hint: "Try --backend cpu.",
  });
}
