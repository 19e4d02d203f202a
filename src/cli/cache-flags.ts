/** The flags every cache-using command takes (resolve, info, load), and how they become library options. */
import type { HubcacheEvent } from "../events.js";
import type { LoadFormat, ModelFormat } from "../handle.js";
import type { ResolveOptions } from "../resolve.js";
import type { Output } from "./output.js";
import { createProgressReporter, describeEvent } from "./progress-bar.js";

/**
 * The flags every cache-using command (resolve, info, load) takes, for node:util parseArgs. One
 * definition, with its help text below and its meaning in `cacheOptions`, so the commands cannot
 * drift apart.
 */
export const CACHE_FLAG_OPTIONS = {
  "cache-dir": { type: "string" },
  "shared-cache": { type: "string" },
  tfhub_cache_dir: { type: "string" },
  "load-format": { type: "string" },
  tfhub_model_load_format: { type: "string" },
  format: { type: "string" },
  offline: { type: "boolean" },
  "lock-timeout": { type: "string" },
  "max-extract-bytes": { type: "string" },
  "max-files": { type: "string" },
  mirror: { type: "string" },
  quiet: { type: "boolean", short: "q" },
  help: { type: "boolean", short: "h" },
} as const;

/** The help lines of CACHE_FLAG_OPTIONS, in the same order. */
export const CACHE_FLAGS_HELP = `  --cache-dir DIR            cache directory (wins over TFHUB_CACHE_DIR, --tfhub_cache_dir and the
                             default <tmpdir>/tfhub_modules); may be s3://… or gs://…
  --shared-cache LOCATION    s3://… or gs://… cache shared by many machines, behind the local one
  --tfhub_cache_dir DIR      TF Hub's flag; used when TFHUB_CACHE_DIR is unset or empty
  --load-format FORMAT       COMPRESSED | UNCOMPRESSED | AUTO (alias --tfhub_model_load_format)
  --format FORMAT            auto | saved-model | tfjs: which archive to ask the host for
                             (default auto: TF.js handles are recognised from the URL)
  --offline                  use the cache only; never touch the network
  --lock-timeout SECONDS     take over a download lock that shows no progress for this long
  --max-extract-bytes N      refuse archives that unpack to more than N bytes
  --max-files N              refuse archives with more than N files and folders (default 100000)
  --mirror URL               fetch through a \`hubcache serve\` mirror (HUBCACHE_MIRROR; its token:
                             HUBCACHE_MIRROR_TOKEN); cache keys stay the handles' own
  -q, --quiet                no progress or notices on stderr
  -h, --help                 this help`;

/** The values of CACHE_FLAG_OPTIONS, as parseArgs returns them. */
export interface CacheFlags {
  "cache-dir"?: string | undefined;
  "shared-cache"?: string | undefined;
  tfhub_cache_dir?: string | undefined;
  "load-format"?: string | undefined;
  tfhub_model_load_format?: string | undefined;
  format?: string | undefined;
  offline?: boolean | undefined;
  "lock-timeout"?: string | undefined;
  "max-extract-bytes"?: string | undefined;
  "max-files"?: string | undefined;
  mirror?: string | undefined;
  quiet?: boolean | undefined;
}

/** A non-negative number flag: undefined when absent, a usage message when malformed. */
function numberFlag(name: string, value: string | undefined): number | undefined | string {
  if (value === undefined) return undefined;
  const n = Number(value);
  return value.trim() !== "" && Number.isFinite(n) && n >= 0
    ? n
    : `--${name} needs a non-negative number, not "${value}".`;
}

export interface CommandContext {
  env: NodeJS.ProcessEnv;
  /** Is stderr a terminal (live progress bar)? */
  stderrIsTTY: boolean;
  /** Aborts the command's work (SIGINT, SIGTERM). */
  signal?: AbortSignal | undefined;
  /** Hides the secrets of the command line's URLs in event texts (progress goes to stderr directly). */
  cleanText?: ((text: string) => string) | undefined;
}

/** An event with every string field passed through `clean`. */
function cleanEvent(event: HubcacheEvent, clean: (text: string) => string): HubcacheEvent {
  const copy: Record<string, unknown> = { ...event };
  for (const [key, value] of Object.entries(copy)) if (typeof value === "string") copy[key] = clean(value);
  return copy as unknown as HubcacheEvent;
}

/**
 * Library options from the cache flags, with progress and notices on stderr: a bar on a terminal
 * (or lines when TFHUB_DOWNLOAD_PROGRESS is set), else lock waits, takeovers, retries and warnings
 * only, one line each.
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
  const lockTimeout = numberFlag("lock-timeout", values["lock-timeout"]);
  if (typeof lockTimeout === "string") return lockTimeout;
  const maxExtract = numberFlag("max-extract-bytes", values["max-extract-bytes"]);
  if (typeof maxExtract === "string") return maxExtract;
  const maxFiles = numberFlag("max-files", values["max-files"]);
  if (typeof maxFiles === "string") return maxFiles;
  const showProgress = !values.quiet && (context.stderrIsTTY || Boolean(context.env.TFHUB_DOWNLOAD_PROGRESS));
  const reporter = showProgress ? createProgressReporter(process.stderr, context.stderrIsTTY) : undefined;
  const { cleanText } = context;
  const onEvent = (raw: HubcacheEvent): void => {
    const event = cleanText ? cleanEvent(raw, cleanText) : raw;
    if (reporter) reporter.onEvent(event);
    else if (
      !values.quiet &&
      (event.type === "lock-wait" ||
        event.type === "lock-takeover" ||
        event.type === "retry" ||
        event.type === "warning")
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
    ...(context.signal ? { signal: context.signal } : {}),
    ...(values["cache-dir"] === undefined ? {} : { cacheDir: values["cache-dir"] }),
    ...(values["load-format"] === undefined ? {} : { loadFormat: values["load-format"] as LoadFormat }),
    ...(values.offline ? { offline: true } : {}),
    ...(values["shared-cache"] === undefined ? {} : { sharedCache: values["shared-cache"] }),
    ...(lockTimeout === undefined ? {} : { lockTimeoutMs: lockTimeout * 1000 }),
    ...(maxExtract === undefined ? {} : { maxExtractBytes: maxExtract }),
    ...(maxFiles === undefined ? {} : { maxFiles }),
    ...(values.mirror === undefined ? {} : { mirror: values.mirror }),
  };
  return { options, stop: () => reporter?.stop() };
}
