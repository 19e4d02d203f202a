/** The `hubcache` command: parses arguments, calls the library, prints, returns an exit code. */
import { environmentHelp } from "./settings-help.js";
import { parseArgs } from "node:util";
import { type ResolveOptions, resolve } from "../resolve.js";
import { INFO_HELP, LOAD_HELP, infoCommand, loadCommand } from "./model-commands.js";
import { SERVE_HELP, serveCommand } from "./serve-command.js";
import { VERSION } from "../version.js";
import {
  EXIT_FAILURE,
  EXIT_OK,
  EXIT_USAGE,
  type Output,
  errorJson,
  formatError,
  printable,
  processOutput,
  usageError,
} from "./output.js";
import { CACHE_FLAGS_HELP, CACHE_FLAG_OPTIONS, type CommandContext, cacheOptions } from "./cache-flags.js";
import { knownUrlReplacements, redactUrl, replaceKnownUrls } from "../redact.js";

// bin/hubcache.js runs the CLI through this (dist/cli/main.js is the CLI's one bundle).
export { runAsProcess } from "./process.js";
import { MANAGE_COMMANDS, MANAGE_HELP, type ManageCommand, manageCommand } from "./manage-commands.js";

const MAIN_HELP = `hubcache ${VERSION}: TensorFlow Hub's model cache for Node.js

Usage:
  hubcache resolve HANDLE...    download (once) and print each model's local directory
  hubcache info HANDLE...       a model's kind, inputs, outputs, files and size
  hubcache load HANDLE          load a TF.js model with TensorFlow.js and run it once (smoke test)
  hubcache ls                   list the cache's entries (size, last use, writer, state)
  hubcache rm HANDLE|HASH...    remove entries
  hubcache prune                remove dead leftovers, unused and least recently used entries
  hubcache verify [HANDLE...]   check every cached file against what was extracted
  hubcache dir                  the cache directory a resolve would use, and why
  hubcache serve                serve this cache to other machines and browsers (a mirror)
  hubcache help [COMMAND]       show help
  hubcache --version

HANDLE is a tfhub.dev or kaggle.com/models URL, any archive URL, a gs:// or s3:// archive
(.tar, .tar.gz, .tgz) or model folder, a local path or file:// URL.
Run "hubcache COMMAND --help" for a command's flags ("hubcache resolve --help" also lists the
environment variables).
`;

const RESOLVE_HELP = `Usage: hubcache resolve [flags] HANDLE...

Prints one absolute path per handle on stdout, in order, and nothing else. On any failure stdout
stays empty, each error goes to stderr as "error[CODE]: message" plus a hint, and the exit code is 1.

Flags:
${CACHE_FLAGS_HELP}
  --json                     print a JSON array of {handle, path} or {handle, error} instead

Environment (docs/settings.md has them all, with the library options):
${environmentHelp()}

Exit codes: 0 success, 1 a handle failed, 2 bad usage, 130/143 stopped by SIGINT/SIGTERM (the
download's lock and temp folder are removed first; a second signal quits at once).
Error codes: see docs/errors.md.
`;

const RESOLVE_FLAG_OPTIONS = { ...CACHE_FLAG_OPTIONS, json: { type: "boolean" } } as const;

/** Every flag `resolve` takes (its --help lists them all). */
export const RESOLVE_FLAGS = Object.keys(RESOLVE_FLAG_OPTIONS);

export interface CliContext {
  out?: Output;
  env?: NodeJS.ProcessEnv;
  /** Is stderr a terminal (live progress bar)? */
  stderrIsTTY?: boolean;
  /** Aborts the command's work (the process's SIGINT/SIGTERM handler uses it). */
  signal?: AbortSignal;
}

export async function main(argv: readonly string[], context: CliContext = {}): Promise<number> {
  const out = guardedOutput(context.out ?? processOutput, argv);
  const [command, ...rest] = argv;
  switch (command) {
    case undefined:
    case "-h":
    case "--help":
      out.stdout(MAIN_HELP);
      return command === undefined ? EXIT_USAGE : EXIT_OK;
    case "help":
      if (isManageCommand(rest[0])) {
        out.stdout(MANAGE_HELP[rest[0]]);
        return EXIT_OK;
      }
      out.stdout(
        rest[0] === "resolve"
          ? RESOLVE_HELP
          : rest[0] === "info"
            ? INFO_HELP
            : rest[0] === "load"
              ? LOAD_HELP
              : rest[0] === "serve"
                ? SERVE_HELP
                : MAIN_HELP,
      );
      return EXIT_OK;
    case "-v":
    case "--version":
      out.stdout(`${VERSION}\n`);
      return EXIT_OK;
    case "resolve":
    case "info":
    case "load":
    case "serve": {
      const commandContext: CommandContext = {
        env: context.env ?? process.env,
        stderrIsTTY: context.stderrIsTTY ?? Boolean(process.stderr.isTTY),
        signal: context.signal,
        cleanText: out.clean,
      };
      const run = { resolve: resolveCommand, info: infoCommand, load: loadCommand, serve: serveCommand }[
        command
      ];
      return run(rest, out, commandContext);
    }
    default:
      if (isManageCommand(command)) {
        return manageCommand(command, rest, out, {
          env: context.env ?? process.env,
          stderrIsTTY: context.stderrIsTTY ?? Boolean(process.stderr.isTTY),
          signal: context.signal,
          cleanText: out.clean,
        });
      }
      return usageError(`unknown command "${command}".`, out);
  }
}

function isManageCommand(name: string | undefined): name is ManageCommand {
  return (MANAGE_COMMANDS as readonly string[]).includes(name ?? "");
}

/**
 * Output that never shows a secret of the URLs on the command line, wherever a message quotes
 * them: it knows where each of those URLs ends, which redaction of a free text cannot always tell.
 */
function guardedOutput(out: Output, argv: readonly string[]): Output & { clean: (text: string) => string } {
  const pairs = knownUrlReplacements(argv.filter((arg) => arg.includes("://")));
  const clean = (text: string): string => (pairs.length === 0 ? text : replaceKnownUrls(text, pairs));
  return {
    stdout: (text) => out.stdout(clean(text)),
    stderr: (text) => out.stderr(clean(text)),
    clean,
  };
}

async function resolveCommand(
  args: readonly string[],
  out: Output,
  context: CommandContext,
): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...args],
      allowPositionals: true,
      options: RESOLVE_FLAG_OPTIONS,
    });
  } catch (error) {
    return usageError(error instanceof Error ? error.message : String(error), out, "resolve");
  }
  const { values, positionals } = parsed;
  if (values.help) {
    out.stdout(RESOLVE_HELP);
    return EXIT_OK;
  }
  if (positionals.length === 0) return usageError("resolve needs at least one HANDLE.", out, "resolve");
  const setup = cacheOptions(values, out, context);
  if (typeof setup === "string") return usageError(setup, out, "resolve");
  const options: ResolveOptions = setup.options;

  const results = await Promise.allSettled(positionals.map((handle) => resolve(handle, options)));
  setup.stop();
  const failed = results.some((r) => r.status === "rejected");
  if (values.json) {
    const rows = results.map((r, i) =>
      // The handle as the user gave it, but never its credentials or signed query.
      r.status === "fulfilled"
        ? { handle: redactUrl(positionals[i] ?? ""), path: r.value }
        : { handle: redactUrl(positionals[i] ?? ""), error: errorJson(r.reason) },
    );
    out.stdout(`${JSON.stringify(rows, null, 2)}\n`);
    return failed ? EXIT_FAILURE : EXIT_OK;
  }
  if (failed) {
    for (const r of results) if (r.status === "rejected") out.stderr(formatError(r.reason, context.signal));
    return EXIT_FAILURE;
  }
  for (const r of results) if (r.status === "fulfilled") out.stdout(`${printable(r.value)}\n`);
  return EXIT_OK;
}
