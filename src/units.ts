/**
 * Human sizes and durations for cache management (`--max-size 10GB`, `--unused-for 30d`,
 * HUBCACHE_MAX_SIZE), parsed by small pure functions, and how the CLI writes them back.
 */

const SIZE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1e3,
  kb: 1e3,
  m: 1e6,
  mb: 1e6,
  g: 1e9,
  gb: 1e9,
  t: 1e12,
  tb: 1e12,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
};

/**
 * "10GB", "500 MiB", "1.5g", "1234" (bytes) → bytes; undefined when it is not a size. Decimal units
 * (kB, MB, GB, TB: powers of 1000) and binary ones (KiB, MiB, GiB, TiB: powers of 1024), any case.
 */
export function parseSize(text: string): number | undefined {
  const match = /^\s*(\d+(?:\.\d+)?|\.\d+)\s*([a-z]*)\s*$/i.exec(text);
  if (!match) return undefined;
  const unit = SIZE_UNITS[(match[2] ?? "").toLowerCase()];
  if (unit === undefined) return undefined;
  return Math.round(Number(match[1]) * unit);
}

const DURATION_UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  min: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 7 * 86_400_000,
};

/** "30d", "12h", "90m", "1.5h", "45s", "2w" → ms; a sequence such as "1d12h" adds up; else undefined. */
export function parseDuration(text: string): number | undefined {
  const trimmed = text.trim().toLowerCase();
  if (trimmed === "") return undefined;
  let total = 0;
  let rest = trimmed;
  while (rest !== "") {
    const match = /^(\d+(?:\.\d+)?)\s*(ms|min|s|m|h|d|w)\s*/.exec(rest);
    if (!match) return undefined;
    total += Number(match[1]) * (DURATION_UNITS[match[2] ?? ""] ?? Number.NaN);
    rest = rest.slice(match[0].length);
  }
  return Number.isFinite(total) ? Math.round(total) : undefined;
}

/** Bytes as a person reads them: "512 B", "1.5 KiB", "10.0 GiB". */
export function formatSize(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(value >= 100 ? 0 : 1)} ${units[unit]}`;
}

/** A time relative to `now` as a person reads it: "just now", "5 min ago", "3 days ago", else a date. */
export function formatAge(ms: number, now: number = Date.now()): string {
  const age = now - ms;
  if (age < 0) return new Date(ms).toISOString().slice(0, 10);
  const minutes = Math.floor(age / 60_000);
  if (minutes < 1) return "just now";
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return `${hours} h ago`;
  const days = Math.floor(hours / 24);
  if (days < 60) return `${days} day${days === 1 ? "" : "s"} ago`;
  return new Date(ms).toISOString().slice(0, 10);
}
