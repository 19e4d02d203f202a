/** What every CLI command shares: usage errors, and turning the cache flags into library options. */
import type { HubcacheEvent } from "../events.js";
import type { LoadFormat, ModelFormat } from "../handle.js";
import type { ResolveOptions } from "../resolve.js";
import type { Output } from "./output.js";
import { createProgressReporter, describeEvent } from "./progress-bar.js";

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

export function usageError(message: string, out: Output): number {
  out.stderr(`error[ERR_HUBCACHE_USAGE]: ${message}\n  hint: run "hubcache --help".\n`);
  return EXIT_USAGE;
}

/** The flags every cache-using command takes (parsed by node:util parseArgs). */
export interface CacheFlags {
  "cache-dir"?: string | undefined;
  tfhub_cache_dir?: string | undefined;
  "load-format"?: string | undefined;
  tfhub_model_load_format?: string | undefined;
  format?: string | undefined;
  offline?: boolean | undefined;
  quiet?: boolean | undefined;
}

export interface CommandContext {
  env: NodeJS.ProcessEnv;
  /** Is stderr a terminal (live progress bar)? */
  stderrIsTTY: boolean;
}

/**
 * Library options from the cache flags, with progress and notices on stderr: a bar on a terminal
 * (or lines when TFHUB_DOWNLOAD_PROGRESS is set), else lock waits, takeovers and warnings only.
 * Returns a usage message when a flag's value is wrong. Call `stop` when the work is done.
 */
export function cacheOptions(
  values: CacheFlags,
  out: Output,
  context: CommandContext,
): { options: ResolveOptions; stop: () => void } | string {
  const format = values.format ?? "auto";
  if (!["auto", "saved-model", "tfjs"].includes(format)) {
    return `--format must be auto, saved-model or tfjs, not "${format}".`;
  }
  const showProgress = !values.quiet && (context.stderrIsTTY || Boolean(context.env.TFHUB_DOWNLOAD_PROGRESS));
  const reporter = showProgress ? createProgressReporter(process.stderr, context.stderrIsTTY) : undefined;
  const onEvent = (event: HubcacheEvent): void => {
    if (reporter) reporter.onEvent(event);
    else if (
      !values.quiet &&
      (event.type === "lock-wait" || event.type === "lock-takeover" || event.type === "warning")
    ) {
      const text = describeEvent(event);
      if (text) out.stderr(`${text}\n`);
    }
  };
  const options: ResolveOptions = {
    env: context.env,
    flags: {
      tfhub_cache_dir: values.tfhub_cache_dir,
      tfhub_model_load_format: values.tfhub_model_load_format,
    },
    modelFormat: format as ModelFormat,
    onEvent,
    ...(values["cache-dir"] === undefined ? {} : { cacheDir: values["cache-dir"] }),
    ...(values["load-format"] === undefined ? {} : { loadFormat: values["load-format"] as LoadFormat }),
    ...(values.offline ? { offline: true } : {}),
  };
  return { options, stop: () => reporter?.stop() };
}
