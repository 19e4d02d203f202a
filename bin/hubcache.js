#!/usr/bin/env node
// Exit codes, SIGINT/SIGTERM and uncaught errors (redacted and escaped like every other error)
// are handled in src/cli/process.ts.
import { runAsProcess } from "../dist/cli/main.js";

runAsProcess(process.argv.slice(2));
