/** `cacheDirInfo` (`hubcache dir`): the cache directory a resolve would use, and which setting chose it. */
import path from "node:path";
import { pythonTempDir, readTfhubFlags } from "../config.js";
import { resolveSettings } from "../settings.js";
import type { ManageOptions } from "./open-store.js";

export type CacheDirSource = "option" | "TFHUB_CACHE_DIR" | "--tfhub_cache_dir" | "default";

export interface CacheDirInfo {
  cacheDir: string;
  /** Which setting chose it (TF Hub's precedence: option > TFHUB_CACHE_DIR > --tfhub_cache_dir > default). */
  source: CacheDirSource;
  /** The same, for people. */
  why: string;
  /** The shared tier behind it (HUBCACHE_SHARED_CACHE), if any. */
  sharedCache: string | null;
}

export function cacheDirInfo(options: ManageOptions = {}): CacheDirInfo {
  const settings = resolveSettings(options);
  const env = options.env ?? process.env;
  const flags = options.flags ?? readTfhubFlags(process.argv.slice(2));
  const [source, why]: [CacheDirSource, string] = options.cacheDir
    ? ["option", "the cacheDir option (--cache-dir)"]
    : env.TFHUB_CACHE_DIR
      ? ["TFHUB_CACHE_DIR", "the TFHUB_CACHE_DIR environment variable"]
      : flags.tfhub_cache_dir
        ? ["--tfhub_cache_dir", "TF Hub's --tfhub_cache_dir flag (TFHUB_CACHE_DIR is unset)"]
        : [
            "default",
            `the default, TF Hub's: ${path.join(pythonTempDir(env), "tfhub_modules")} (<tmpdir>/tfhub_modules; TFHUB_CACHE_DIR is unset)`,
          ];
  return { cacheDir: settings.cacheDir, source, why, sharedCache: settings.sharedCache ?? null };
}
