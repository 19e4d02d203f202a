/**
 * Every setting hubcache reads, written once: its library option, environment variable, CLI flag,
 * default and meaning. `resolveSettings` (config.ts) takes its defaults from here, the CLI's help
 * lists the environment from here, and docs/settings.md is generated from here
 * (`npm run docs:settings`; a test fails when the page is out of date).
 */

export interface SettingDoc {
  /** The `ResolveOptions` field, if there is one. */
  option?: string;
  /** The environment variable(s), if any. */
  env?: string;
  /** The CLI flag, with its argument, if any. */
  flag?: string;
  /** The default, as a person reads it ("60 s", "5 % of the disk, at most 1 GiB"). */
  default: string;
  meaning: string;
}

/** Default values used by the code (ms and bytes). */
export const DEFAULTS = {
  lockTimeoutMs: 60_000,
  connectTimeoutMs: 30_000,
  /** Below the lock's 60 s stale window: a stalled holder retries (and shows progress) before waiters may take over. */
  idleTimeoutMs: 30_000,
  retries: 5,
  retryDelayMs: 1000,
  maxFiles: 100_000,
  /** Below this average rate over the window, a download counts as stalled (curl's --speed-limit). */
  minSpeedBytesPerSec: 1024,
  minSpeedWindowMs: 30_000,
} as const;

const seconds = (ms: number): string => `${ms / 1000} s`;

export const SETTINGS: readonly SettingDoc[] = [
  {
    option: "cacheDir",
    env: "TFHUB_CACHE_DIR",
    flag: "--cache-dir DIR",
    default: "`<tmpdir>/tfhub_modules` (as TF Hub)",
    meaning:
      "cache directory; may be `s3://BUCKET/prefix` or `gs://BUCKET/prefix`. The option and flag win over `TFHUB_CACHE_DIR`, which wins over `--tfhub_cache_dir`",
  },
  {
    env: "TMPDIR, TEMP, TMP",
    default: "the OS temp dir",
    meaning: "where the default cache lives, as Python's `tempfile.gettempdir()`",
  },
  {
    option: "sharedCache",
    env: "HUBCACHE_SHARED_CACHE",
    flag: "--shared-cache LOCATION",
    default: "none",
    meaning: "a shared `s3://…`/`gs://…` cache behind the local one (two tiers)",
  },
  {
    option: "loadFormat",
    env: "TFHUB_MODEL_LOAD_FORMAT",
    flag: "--load-format FORMAT",
    default: "`AUTO` (= `COMPRESSED`)",
    meaning: "`COMPRESSED` downloads and caches; `UNCOMPRESSED` returns the host's remote location",
  },
  {
    option: "modelFormat",
    flag: "--format FORMAT",
    default: "`auto` (TF.js handles are recognised from the URL)",
    meaning: "`saved-model` or `tfjs`: which archive to ask the host for",
  },
  {
    option: "offline",
    env: "HUBCACHE_OFFLINE",
    flag: "--offline",
    default: "off",
    meaning: "cache only: a miss fails at once with `ERR_HUBCACHE_OFFLINE`, no request is made",
  },
  {
    option: "lockTimeoutMs",
    env: "HUBCACHE_LOCK_TIMEOUT (s)",
    flag: "--lock-timeout SECONDS",
    default: seconds(DEFAULTS.lockTimeoutMs),
    meaning: "a download lock that shows no progress for this long is taken over",
  },
  {
    option: "maxExtractBytes",
    env: "HUBCACHE_MAX_EXTRACT_BYTES",
    flag: "--max-extract-bytes N",
    default: "no fixed limit",
    meaning: "refuse archives that unpack to more than N bytes (`ERR_HUBCACHE_TOO_LARGE`)",
  },
  {
    option: "maxFiles",
    env: "HUBCACHE_MAX_FILES",
    flag: "--max-files N",
    default: DEFAULTS.maxFiles.toLocaleString("en-US"),
    meaning:
      "refuse archives with more files and folders (`ERR_HUBCACHE_TOO_LARGE`); memory stays bounded whatever the count",
  },
  {
    option: "minFreeBytes",
    env: "HUBCACHE_MIN_FREE_BYTES",
    default: "5 % of the disk, at most 1 GiB",
    meaning:
      "extraction stops before the cache's disk has less free (`ERR_HUBCACHE_DISK_FULL`); `0` turns the guard off",
  },
  {
    option: "maxCacheBytes",
    env: "HUBCACHE_MAX_SIZE",
    default: "no cap",
    meaning:
      "after each download, least recently used entries are removed until the cache holds at most this (`10GB`, `500MiB` or bytes); never the entry just downloaded, never one being downloaded",
  },
  {
    option: "touchIntervalMs",
    env: "HUBCACHE_TOUCH_INTERVAL (s)",
    default: "3600 s",
    meaning: "a cache hit records the entry's last use (for `prune`) at most this often",
  },
  {
    option: "connectTimeoutMs",
    env: "HUBCACHE_CONNECT_TIMEOUT (s)",
    default: seconds(DEFAULTS.connectTimeoutMs),
    meaning: "TCP/TLS connect timeout",
  },
  {
    option: "idleTimeoutMs",
    env: "HUBCACHE_IDLE_TIMEOUT (s)",
    default: seconds(DEFAULTS.idleTimeoutMs),
    meaning: "no header or body bytes for this long: the attempt failed",
  },
  {
    option: "minSpeedBytesPerSec",
    env: "HUBCACHE_MIN_SPEED",
    default: `${DEFAULTS.minSpeedBytesPerSec} B/s`,
    meaning:
      "a download slower than this on average over the window is retried (resumed), then fails with `ERR_HUBCACHE_TIMEOUT`; `0` turns the check off (curl's `--speed-limit`)",
  },
  {
    option: "minSpeedWindowMs",
    env: "HUBCACHE_MIN_SPEED_TIME (s)",
    default: seconds(DEFAULTS.minSpeedWindowMs),
    meaning:
      "the window of the minimum rate (curl's `--speed-time`); only time spent waiting for the network counts",
  },
  {
    option: "deadlineMs",
    env: "HUBCACHE_DEADLINE (s)",
    default: "none",
    meaning:
      "an overall deadline for one download, retries and resumes included: past it, `ERR_HUBCACHE_TIMEOUT`, not retried",
  },
  {
    option: "retries",
    env: "HUBCACHE_RETRIES",
    default: String(DEFAULTS.retries),
    meaning:
      "retries per download (connection errors, stalls, 408, 429, 5xx; never other 4xx), resuming with `Range` + `If-Range`",
  },
  {
    option: "retryDelayMs",
    default: `${DEFAULTS.retryDelayMs} ms`,
    meaning: "first backoff, doubling with jitter; `Retry-After` wins",
  },
  {
    option: "mirror",
    env: "HUBCACHE_MIRROR",
    flag: "--mirror URL",
    default: "none",
    meaning:
      "a `hubcache serve` mirror (`http://host:port`) that every http(s) request goes through; cache keys stay the handles' own; no fallback to the internet",
  },
  {
    option: "mirrorToken",
    env: "HUBCACHE_MIRROR_TOKEN",
    default: "none",
    meaning: "the mirror's bearer token, sent to the mirror only and never stored",
  },
  {
    env: "HUBCACHE_SERVE_TOKEN",
    flag: "serve --token TOKEN",
    default: "none",
    meaning: "`hubcache serve` requires `Authorization: Bearer TOKEN` ([docs/serve.md](serve.md))",
  },
  {
    env: "HTTP_PROXY, HTTPS_PROXY",
    default: "none",
    meaning: "proxy URLs (lower-case names too); `HTTPS_PROXY` falls back to `HTTP_PROXY`",
  },
  {
    env: "NO_PROXY",
    default: "none",
    meaning: "hosts that skip the proxy: `host`, `.domain`, `host:port`, `*`",
  },
  {
    env: "TFHUB_DISABLE_CERT_VALIDATION",
    default: "unset",
    meaning: "exactly `true`: TLS certificates are not checked (unsafe; a `warning` event says so)",
  },
  {
    env: "TFHUB_DOWNLOAD_PROGRESS",
    default: "unset",
    meaning: "any non-empty value: the CLI shows progress even when stderr is not a terminal",
  },
  {
    option: "storage",
    env: "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL",
    default: "the AWS SDK's own chain",
    meaning: "S3 credentials, region and endpoint; an endpoint turns on path-style addressing",
  },
  {
    env: "HUBCACHE_S3_FORCE_PATH_STYLE",
    default: "on when an endpoint is set",
    meaning: "`1`/`0`: path-style S3 addressing on or off",
  },
  {
    env: "GOOGLE_APPLICATION_CREDENTIALS, GOOGLE_CLOUD_PROJECT, STORAGE_EMULATOR_HOST",
    default: "Application Default Credentials",
    meaning: "GCS credentials, project and emulator endpoint",
  },
];
