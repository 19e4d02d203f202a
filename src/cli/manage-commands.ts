/**
 * Cache management commands: `hubcache ls`, `rm`, `prune`, `verify`, `dir`. Thin wrappers over
 * src/manage/: they parse flags, call the library, and format what it returns (text or --json).
 */
import { parseArgs } from "node:util";
import type { ResolveOptions } from "../settings.js";
import {
  type CacheEntry,
  type EntrySort,
  type ManageOptions,
  type PruneResult,
  type VerifyResult,
  cacheDirInfo,
  formatAge,
  formatSize,
  listEntries,
  parseDuration,
  parseSize,
  pruneCache,
  removeEntries,
  verifyEntries,
} from "../manage/index.js";
import {
  CACHE_FLAGS_HELP,
  CACHE_FLAG_OPTIONS,
  type CacheFlags,
  type CommandContext,
  cacheOptions,
} from "./cache-flags.js";
import { EXIT_FAILURE, EXIT_OK, type Output, errorJson, formatError, usageError } from "./output.js";

export const MANAGE_COMMANDS = ["ls", "rm", "prune", "verify", "dir"] as const;
export type ManageCommand = (typeof MANAGE_COMMANDS)[number];

const COMMON = `Flags (all commands):
${CACHE_FLAGS_HELP}
  --json                     print JSON instead of text`;

export const MANAGE_HELP: Record<ManageCommand, string> = {
  ls: `Usage: hubcache ls [--sort used|size|name] [flags]

One row per cache entry: handle, size, files, last used, created, writer (hubcache or
tensorflow_hub), state (ok, incomplete, downloading); then the total and the cache dir.
  --sort used|size|name      least recently used first | largest first | by handle (default)

${COMMON}
`,
  rm: `Usage: hubcache rm [--dry-run] [--force] HANDLE|HASH...

Removes entries (folder, descriptor, record). An entry whose download lock a live process holds
is refused (ERR_HUBCACHE_IN_USE, naming the holder) unless --force.
  --dry-run                  list what would go; remove nothing
  --force                    remove even an entry whose lock is held

${COMMON}

Exit codes: 0 all removed, 1 some target was not found or is in use, 2 bad usage.
`,
  prune: `Usage: hubcache prune [--max-size SIZE] [--unused-for DURATION] [--dry-run] [flags]

Removes leftovers of dead downloads and incomplete entries, then entries not used for DURATION,
then least recently used entries until the cache holds at most SIZE. Entries being downloaded or
whose lock is held are never touched; a prune never waits for a download.
  --max-size SIZE            10GB, 500MiB, 1.5G, or bytes
  --unused-for DURATION      30d, 12h, 90m, 1w
  --dry-run                  list what would go and how much it frees; remove nothing

${COMMON}
`,
  verify: `Usage: hubcache verify [--fix] [HANDLE|HASH...] [flags]

Checks every file of each entry (all entries without arguments) against hubcache's record of what
was extracted: present, same size, same CRC-32 (a changed byte is found). Entries hubcache did not
write are reported as not verifiable; records from before digests are checked by size only.
  --fix                      download damaged entries again (give the exact handle when the
                             cached one is redacted)

${COMMON}

Exit codes: 0 nothing damaged, 1 some entry is damaged (or a target was not found), 2 bad usage.
`,
  dir: `Usage: hubcache dir [flags]

Prints the cache directory a resolve with the same flags and environment would use, and which
setting chose it (--cache-dir, TFHUB_CACHE_DIR, --tfhub_cache_dir, or the default).

${COMMON}
`,
};

const OPTIONS = {
  ...CACHE_FLAG_OPTIONS,
  json: { type: "boolean" },
  sort: { type: "string" },
  "dry-run": { type: "boolean" },
  force: { type: "boolean" },
  "max-size": { type: "string" },
  "unused-for": { type: "string" },
  fix: { type: "boolean" },
} as const;

interface Parsed {
  values: CacheFlags & {
    json?: boolean | undefined;
    sort?: string | undefined;
    "dry-run"?: boolean | undefined;
    force?: boolean | undefined;
    "max-size"?: string | undefined;
    "unused-for"?: string | undefined;
    fix?: boolean | undefined;
    help?: boolean | undefined;
  };
  positionals: string[];
}

/** Flags that only some commands take. */
const ONLY: Record<string, readonly ManageCommand[]> = {
  sort: ["ls"],
  "dry-run": ["rm", "prune"],
  force: ["rm"],
  "max-size": ["prune"],
  "unused-for": ["prune"],
  fix: ["verify"],
};

export async function manageCommand(
  command: ManageCommand,
  args: readonly string[],
  out: Output,
  context: CommandContext,
): Promise<number> {
  let parsed: Parsed;
  try {
    parsed = parseArgs({ args: [...args], allowPositionals: true, options: OPTIONS });
  } catch (error) {
    return usageError(error instanceof Error ? error.message : String(error), out);
  }
  const { values } = parsed;
  if (values.help) {
    out.stdout(MANAGE_HELP[command]);
    return EXIT_OK;
  }
  for (const [flag, commands] of Object.entries(ONLY)) {
    if (values[flag as keyof Parsed["values"]] !== undefined && !commands.includes(command)) {
      return usageError(`${command} does not take --${flag}.`, out);
    }
  }
  const setup = cacheOptions({ ...values, quiet: values.quiet ?? !values.fix }, out, context);
  if (typeof setup === "string") return usageError(setup, out);
  try {
    return await run(command, parsed, setup.options, out);
  } catch (error) {
    if (values.json) out.stdout(`${JSON.stringify({ error: errorJson(error) }, null, 2)}\n`);
    else out.stderr(formatError(error));
    return EXIT_FAILURE;
  } finally {
    setup.stop();
  }
}

function manageOptions(options: ResolveOptions): ManageOptions {
  const { cacheDir, sharedCache, storage, env, flags, lockTimeoutMs, onEvent } = options;
  return { cacheDir, sharedCache, storage, env, flags, lockTimeoutMs, onEvent };
}

interface Run {
  parsed: Parsed;
  /** The cache settings, as a resolve takes them (verify --fix resolves with them). */
  options: ResolveOptions;
  manage: ManageOptions;
  out: Output;
  print: (data: unknown) => void;
}

async function run(
  command: ManageCommand,
  parsed: Parsed,
  options: ResolveOptions,
  out: Output,
): Promise<number> {
  const print = (data: unknown): void => out.stdout(`${JSON.stringify(data, jsonErrors, 2)}\n`);
  const takesTargets = command === "rm" || command === "verify";
  if (!takesTargets && parsed.positionals.length > 0) {
    return usageError(`${command} takes no arguments.`, out);
  }
  return COMMANDS[command]({ parsed, options, manage: manageOptions(options), out, print });
}

const COMMANDS: Record<ManageCommand, (run: Run) => Promise<number>> = {
  async ls({ parsed, manage, out, print }) {
    const sort = parsed.values.sort ?? "name";
    if (!["used", "size", "name"].includes(sort)) {
      return usageError(`--sort must be used, size or name, not "${sort}".`, out);
    }
    const listing = await listEntries({ ...manage, sort: sort as EntrySort });
    if (parsed.values.json) print(listing);
    else out.stdout(formatListing(listing.entries, listing.totalBytes, listing.cacheDir));
    return EXIT_OK;
  },
  async rm({ parsed, manage, out, print }) {
    const { values, positionals } = parsed;
    if (positionals.length === 0) return usageError("rm needs at least one HANDLE or HASH.", out);
    const result = await removeEntries(positionals, {
      ...manage,
      dryRun: values["dry-run"],
      force: values.force,
    });
    if (values.json) print(result);
    else {
      for (const r of result.results) {
        const name = r.entry ? entryName(r.entry) : r.target;
        if (r.error) out.stderr(formatError(r.error));
        else {
          const verb = r.status === "removed" ? "removed" : "would remove";
          out.stdout(`${verb} ${name} (${formatSize(r.entry?.bytes ?? 0)})\n`);
        }
      }
      out.stdout(`${result.dryRun ? "would free" : "freed"} ${formatSize(result.freedBytes)}\n`);
    }
    return result.results.some((r) => r.error) ? EXIT_FAILURE : EXIT_OK;
  },
  async prune({ parsed, manage, out, print }) {
    const limits = pruneLimits(parsed.values);
    if (typeof limits === "string") return usageError(limits, out);
    const result = await pruneCache({ ...manage, ...limits, dryRun: parsed.values["dry-run"] });
    if (parsed.values.json) print(result);
    else out.stdout(formatPrune(result));
    return EXIT_OK;
  },
  async verify({ parsed, options, manage, out, print }) {
    const result = await verifyEntries(parsed.positionals, {
      ...manage,
      fix: parsed.values.fix,
      resolveOptions: options,
    });
    if (parsed.values.json) print(result);
    else out.stdout(formatVerify(result));
    return result.damaged > 0 || result.notFound.length > 0 ? EXIT_FAILURE : EXIT_OK;
  },
  async dir({ parsed, manage, out, print }) {
    const info = cacheDirInfo(manage);
    if (parsed.values.json) print(info);
    else {
      const shared = info.sharedCache === null ? "" : `shared cache behind it: ${info.sharedCache}\n`;
      out.stdout(`${info.cacheDir}\nchosen by ${info.why}\n${shared}`);
    }
    return EXIT_OK;
  },
};

/** Errors inside results print as their JSON form (code, message, hint). */
function jsonErrors(_key: string, value: unknown): unknown {
  return value instanceof Error ? errorJson(value) : value;
}

function pruneLimits(values: Parsed["values"]): { maxBytes?: number; unusedForMs?: number } | string {
  const limits: { maxBytes?: number; unusedForMs?: number } = {};
  if (values["max-size"] !== undefined) {
    const bytes = parseSize(values["max-size"]);
    if (bytes === undefined) {
      return `--max-size needs a size such as 10GB, 500MiB or bytes, not "${values["max-size"]}".`;
    }
    limits.maxBytes = bytes;
  }
  if (values["unused-for"] !== undefined) {
    const ms = parseDuration(values["unused-for"]);
    if (ms === undefined) {
      return `--unused-for needs a duration such as 30d, 12h or 90m, not "${values["unused-for"]}".`;
    }
    limits.unusedForMs = ms;
  }
  return limits;
}

function entryName(entry: CacheEntry): string {
  return entry.handle ?? entry.hash;
}

function formatListing(entries: readonly CacheEntry[], total: number, cacheDir: string): string {
  const header = ["HANDLE", "SIZE", "FILES", "LAST USED", "CREATED", "WRITER", "STATE"];
  const rows = entries.map((entry) => [
    entryName(entry),
    entry.bytes === null ? "-" : formatSize(entry.bytes),
    entry.files === null ? "-" : String(entry.files),
    entry.lastUsedAt === null ? "-" : formatAge(Date.parse(entry.lastUsedAt)),
    entry.createdAt === null ? "-" : formatAge(Date.parse(entry.createdAt)),
    entry.writer ?? "-",
    entry.state,
  ]);
  const widths = header.map((title, i) =>
    Math.max(title.length, ...rows.map((row) => (row[i] ?? "").length)),
  );
  const line = (cells: string[]): string =>
    `${cells
      .map((cell, i) => (i === 1 || i === 2 ? cell.padStart(widths[i] ?? 0) : cell.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd()}\n`;
  const count = `${entries.length} ${entries.length === 1 ? "entry" : "entries"}, ${formatSize(total)} in ${cacheDir}\n`;
  return (entries.length > 0 ? line(header) + rows.map(line).join("") : "") + count;
}

function formatPrune(result: PruneResult): string {
  if (!result.ran) return `another prune is running (${result.busyWith ?? "unknown holder"}); nothing done\n`;
  const verb = result.dryRun ? "would remove" : "removed";
  const lines = result.removed.map(
    ({ entry, reason }) => `${verb} ${entryName(entry)} (${formatSize(entry.bytes ?? 0)}, ${reason})\n`,
  );
  for (const { entry } of result.skipped) lines.push(`kept ${entryName(entry)}: its lock is held (in use)\n`);
  if (result.debris.length > 0) {
    lines.push(`removed ${result.debris.length} leftovers of dead downloads or removals\n`);
  }
  lines.push(
    `${result.dryRun ? "would free" : "freed"} ${formatSize(result.freedBytes)}; the cache ${result.dryRun ? "would hold" : "holds"} ${formatSize(result.totalBytesAfter)} (${result.cacheDir})\n`,
  );
  return lines.join("");
}

function formatVerify(result: VerifyResult): string {
  const lines: string[] = [];
  for (const verified of result.entries) {
    const name = entryName(verified.entry);
    if (verified.status === "ok") {
      lines.push(
        `ok ${name}${verified.checked === "size" ? " (sizes only: recorded before digests)" : ""}\n`,
      );
    } else if (verified.status === "not-verifiable") {
      lines.push(`not verifiable ${name} (not written by hubcache: no record of its files)\n`);
    } else if (verified.status === "downloading") {
      lines.push(`skipped ${name} (being downloaded)\n`);
    } else {
      lines.push(`DAMAGED ${name}\n`);
      for (const problem of verified.problems) lines.push(`  ${problem.file}: ${problem.detail}\n`);
      if (verified.fixed) lines.push("  downloaded again\n");
      else if (verified.fixError) lines.push(`  not fixed: ${verified.fixError.message}\n`);
    }
  }
  for (const target of result.notFound) lines.push(`not found ${target}\n`);
  lines.push(`${result.entries.length} checked, ${result.damaged} damaged (${result.cacheDir})\n`);
  return lines.join("");
}
