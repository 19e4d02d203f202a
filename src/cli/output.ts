/** How the CLI shows errors: `error[CODE]: message` and a hint line, on stderr. */
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

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

export function usageError(message: string, out: Output): number {
  out.stderr(`error[ERR_HUBCACHE_USAGE]: ${message}\n  hint: run "hubcache --help".\n`);
  return EXIT_USAGE;
}

export function formatError(error: unknown): string {
  if (error instanceof HubcacheError) {
    return `error[${error.code}]: ${error.message}\n${error.hint ? `  hint: ${error.hint}\n` : ""}`;
  }
  const message = error instanceof Error ? error.message : String(error);
  return `error[ERR_HUBCACHE_INTERNAL]: ${redactText(message)}\n  hint: This is a bug in hubcache; please report it with the command you ran.\n`;
}

export function errorJson(error: unknown): Record<string, unknown> {
  if (error instanceof HubcacheError) return error.toJSON();
  return {
    code: "ERR_HUBCACHE_INTERNAL",
    message: redactText(error instanceof Error ? error.message : String(error)),
  };
}

export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(value >= 100 ? 0 : 1)} ${units[unit]}`;
}
