#!/usr/bin/env node
import { main } from "../dist/cli/main.js";

let finished = false;
main(process.argv.slice(2)).then(
  (code) => {
    finished = true;
    process.exitCode = code;
  },
  (error) => {
    finished = true;
    process.stderr.write(
      `error[ERR_HUBCACHE_INTERNAL]: ${error instanceof Error ? error.message : String(error)}\n`,
    );
    process.exitCode = 1;
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
  process.exitCode = 1;
});
