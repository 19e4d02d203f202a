/**
 * How the CLI shows text: errors as `error[CODE]: message` and a hint line on stderr, usage
 * errors, exit codes, and `printable`, which every piece of text from outside (messages, names
 * from archives, handles, paths) goes through before it reaches a terminal.
 */
import { HubcacheError } from "../errors.js";
import { redactText } from "../redact.js";

export interface Output {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

export const processOutput: Output = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
};

/**
 * Control characters (C0, DEL, C1) and bidirectional overrides as visible escapes (`\n`, `\r`,
 * `\t`, `\x1b`, `\u202e`), so no text from an archive, a host or a handle can move the cursor,
 * ring the bell, recolour the terminal or forge a line of output.
 */
export function printable(text: string): string {
  return text.replace(
    // eslint-disable-next-line no-control-regex
    /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g,
    (c) => {
      const named = ESCAPES[c];
      if (named) return named;
      const code = c.charCodeAt(0);
      return code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16)}`;
    },
  );
}

const ESCAPES: Readonly<Record<string, string>> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** A usage error, with the help that lists what `command` takes (or the commands). */
export function usageError(message: string, out: Output, command?: string): number {
  const hint =
    command === undefined
      ? 'run "hubcache --help" for the commands.'
      : `run "hubcache ${command} --help" for its flags and arguments.`;
  out.stderr(`error[ERR_HUBCACHE_USAGE]: ${printable(message)}\n  hint: ${hint}\n`);
  return EXIT_USAGE;
}

/**
 * An error as `error[CODE]: message` and its hint. When the command itself was stopped (SIGINT,
 * SIGTERM: `stopped` has fired), the ABORTED errors that follow say so, without the library's
 * hint about AbortSignals.
 */
export function formatError(error: unknown, stopped?: AbortSignal): string {
  if (error instanceof HubcacheError && error.code === "ERR_HUBCACHE_ABORTED" && stopped?.aborted) {
    return `error[${error.code}]: ${printable(error.message)}\n  hint: hubcache was stopped; run the command again to finish.\n`;
  }
  if (error instanceof HubcacheError) {
    const hint = error.hint ? `  hint: ${printable(error.hint)}\n` : "";
    return `error[${printable(error.code)}]: ${printable(error.message)}\n${hint}`;
  }
  const message = error instanceof Error ? error.message : String(error);
  return `error[ERR_HUBCACHE_INTERNAL]: ${printable(redactText(message))}\n  hint: This is a bug in hubcache; please report it with the command you ran.\n`;
}

export function errorJson(error: unknown): Record<string, unknown> {
  if (error instanceof HubcacheError) return error.toJSON();
  return {
    code: "ERR_HUBCACHE_INTERNAL",
    message: redactText(error instanceof Error ? error.message : String(error)),
  };
}

/** Bytes as a person reads them (units.ts formatSize, the one definition). */
export { formatSize as formatBytes } from "../units.js";
