/**
 * The CLI as a process (bin/hubcache.js): the exit code, SIGINT/SIGTERM, and errors nothing
 * else caught, printed through the same redaction and escaping as every other error.
 */
import { main } from "./main.js";
import { EXIT_FAILURE, formatError } from "./output.js";

/** Exit codes of a process stopped by a signal, as shells report them (128 + the signal's number). */
const SIGNAL_EXIT_CODES = { SIGINT: 130, SIGTERM: 143 } as const;
type StopSignal = keyof typeof SIGNAL_EXIT_CODES;

/**
 * After the first signal, how long the library gets to remove its lock and temp folder before the
 * process exits anyway (a second signal exits at once).
 */
const CLEANUP_GRACE_MS = 10_000;

/** Exit without waiting for the work, giving a terminal its cursor back (the bar hides it). */
function exitNow(code: number): never {
  if (process.stderr.isTTY) process.stderr.write("\x1b[?25h\n");
  process.exit(code);
}

export function runAsProcess(argv: readonly string[]): void {
  const controller = new AbortController();
  let stoppedBy: StopSignal | undefined;
  let finished = false;
  const onSignal = (signal: StopSignal): void => {
    if (stoppedBy !== undefined || finished) {
      exitNow(SIGNAL_EXIT_CODES[signal]); // second signal: at once
    }
    stoppedBy = signal;
    const again = signal === "SIGINT" ? "press Ctrl-C again" : "send it again";
    const what = signal === "SIGINT" ? "interrupted" : "terminated";
    process.stderr.write(`\n${what}: stopping and cleaning up (${again} to quit at once)\n`);
    controller.abort(new Error(`stopped by ${signal}`));
    setTimeout(() => exitNow(SIGNAL_EXIT_CODES[signal]), CLEANUP_GRACE_MS).unref();
  };
  for (const signal of Object.keys(SIGNAL_EXIT_CODES) as StopSignal[]) process.on(signal, onSignal);

  main(argv, { signal: controller.signal }).then(
    (code) => {
      finished = true;
      process.exitCode = stoppedBy === undefined ? code : SIGNAL_EXIT_CODES[stoppedBy];
    },
    (error: unknown) => {
      finished = true;
      process.stderr.write(formatError(error));
      process.exitCode = stoppedBy === undefined ? EXIT_FAILURE : SIGNAL_EXIT_CODES[stoppedBy];
    },
  );

  // Node exits (with 0) once nothing is left to wait for, even if main() never settled: a bug must
  // never look like success with no output.
  process.on("beforeExit", () => {
    if (finished) return;
    finished = true;
    process.stderr.write(
      "error[ERR_HUBCACHE_INTERNAL]: hubcache stopped before finishing its work (an operation never completed). This is a bug; please report it.\n",
    );
    process.exitCode = EXIT_FAILURE;
  });
}
