/**
 * Settings, read lazily on every call (never at import), with TF Hub's precedence:
 * explicit option > non-empty environment variable > command-line flag > default.
 */
import os from "node:os";
import path from "node:path";
import { ErrorCode, HubcacheError } from "./errors.js";
import type { LoadFormat } from "./handle.js";

export type Env = Readonly<Record<string, string | undefined>>;

/** TF Hub's absl flags that hubcache honours, as found in argv (`--flag=value` or `--flag value`). */
export interface TfhubFlags {
  tfhub_cache_dir?: string | undefined;
  tfhub_model_load_format?: string | undefined;
}

/** Read `--tfhub_cache_dir` and `--tfhub_model_load_format` out of an argv, as absl would. */
export function readTfhubFlags(argv: readonly string[]): TfhubFlags {
  const flags: TfhubFlags = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? "";
    const match = /^--?(tfhub_cache_dir|tfhub_model_load_format)(?:=(.*))?$/.exec(arg);
    if (!match) continue;
    const name = match[1] as keyof TfhubFlags;
    const value = match[2] ?? argv[i + 1];
    if (match[2] === undefined) i++;
    if (value !== undefined) flags[name] = value;
  }
  return flags;
}

/** Python's `tempfile.gettempdir()`: TMPDIR, TEMP, TMP, then the platform default. */
export function pythonTempDir(env: Env): string {
  for (const name of ["TMPDIR", "TEMP", "TMP"]) {
    const value = env[name];
    if (value) return path.resolve(value);
  }
  return os.tmpdir();
}

/** TF Hub's `absolute_path`: anything with `://` (a URL of any scheme) is left alone, the rest made absolute. */
export function absoluteLocation(location: string): string {
  return location.includes("://") ? location : path.resolve(location);
}

export interface CacheDirSources {
  cacheDir?: string | undefined;
  env: Env;
  flags: TfhubFlags;
}

/** Which setting chose the cache directory. */
export type CacheDirSource = "option" | "TFHUB_CACHE_DIR" | "--tfhub_cache_dir" | "default";

export interface ChosenCacheDir {
  cacheDir: string;
  source: CacheDirSource;
}

/** The cache directory: option > TFHUB_CACHE_DIR (non-empty) > --tfhub_cache_dir > <tmpdir>/tfhub_modules. */
export function chooseCacheDir(sources: CacheDirSources): string {
  return chooseCacheDirWithSource(sources).cacheDir;
}

/** chooseCacheDir, and which setting chose it (for messages, and `hubcache dir`). */
export function chooseCacheDirWithSource({ cacheDir, env, flags }: CacheDirSources): ChosenCacheDir {
  if (cacheDir) return { cacheDir: absoluteLocation(cacheDir), source: "option" };
  const fromEnv = env.TFHUB_CACHE_DIR;
  if (fromEnv) return { cacheDir: absoluteLocation(fromEnv), source: "TFHUB_CACHE_DIR" };
  if (flags.tfhub_cache_dir) {
    return { cacheDir: absoluteLocation(flags.tfhub_cache_dir), source: "--tfhub_cache_dir" };
  }
  return { cacheDir: path.join(pythonTempDir(env), "tfhub_modules"), source: "default" };
}

/** The setting that chose the cache dir, as a user would name it in a message. */
export function cacheDirSetting(source: CacheDirSource): string {
  switch (source) {
    case "option":
      return "--cache-dir / the cacheDir option";
    case "TFHUB_CACHE_DIR":
      return "TFHUB_CACHE_DIR";
    case "--tfhub_cache_dir":
      return "--tfhub_cache_dir";
    case "default":
      return "the default (<tmpdir>/tfhub_modules, as TF Hub)";
  }
}

/**
 * A hint sentence that says which setting chose the cache dir and to point it at `target` ("a
 * directory you can write", "the cache that has it").
 */
export function cacheDirHint(source: CacheDirSource, target: string): string {
  if (source === "default") {
    return `The cache dir is ${cacheDirSetting(source)}: set TFHUB_CACHE_DIR or --cache-dir to ${target}.`;
  }
  return `The cache dir was chosen by ${cacheDirSetting(source)}: point it at ${target}.`;
}

const LOAD_FORMATS: readonly LoadFormat[] = ["COMPRESSED", "UNCOMPRESSED", "AUTO"];

/** Load format: option > TFHUB_MODEL_LOAD_FORMAT > --tfhub_model_load_format > AUTO. Validated. */
export function chooseLoadFormat(option: string | undefined, env: Env, flags: TfhubFlags): LoadFormat {
  const [value, source] = option
    ? [option, "the loadFormat option"]
    : env.TFHUB_MODEL_LOAD_FORMAT
      ? [env.TFHUB_MODEL_LOAD_FORMAT, "TFHUB_MODEL_LOAD_FORMAT"]
      : flags.tfhub_model_load_format
        ? [flags.tfhub_model_load_format, "--tfhub_model_load_format"]
        : ["AUTO", "default"];
  if ((LOAD_FORMATS as readonly string[]).includes(value)) return value as LoadFormat;
  const upper = value.toUpperCase();
  const suggestion = (LOAD_FORMATS as readonly string[]).includes(upper) ? ` Did you mean "${upper}"?` : "";
  throw new HubcacheError(ErrorCode.INVALID_CONFIG, `Invalid load format "${value}" from ${source}.`, {
    hint: `Use one of ${LOAD_FORMATS.join(", ")} (upper case, as in TensorFlow Hub).${suggestion}`,
  });
}

const TRUE_WORDS = new Set(["1", "true", "yes", "on"]);

/** Is a boolean-ish environment variable set ("1", "true", "yes", "on", any case)? */
export function envFlag(env: Env, name: string): boolean {
  const value = env[name];
  return value !== undefined && TRUE_WORDS.has(value.trim().toLowerCase());
}

/** A non-negative number from the environment, with a clear error when it is not one. */
export function envNumber(env: Env, name: string): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw.trim() === "") return undefined;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0) {
    throw new HubcacheError(ErrorCode.INVALID_CONFIG, `${name}="${raw}" is not a non-negative number.`, {
      hint: `Unset ${name} or give it a number.`,
    });
  }
  return value;
}

/** A numeric option passed in code: undefined, or a finite non-negative number (else a coded error). */
export function optionNumber(name: string, value: number | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
    throw new HubcacheError(
      ErrorCode.INVALID_CONFIG,
      `The ${name} option must be a non-negative number, not ${String(value)}.`,
      {
        hint: `Pass a number (or leave ${name} out for the default).`,
      },
    );
  }
  return value;
}
