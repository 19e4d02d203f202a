/** `hubcache serve`: run the read-through mirror on this machine's cache until SIGTERM/SIGINT. */
import { parseArgs } from "node:util";
import type { HubcacheEvent } from "../events.js";
import { describeEvent } from "./progress-bar.js";
import {
  DEFAULT_HOSTS,
  type Policy,
  mirrorAddressGuard,
  parseResolve,
  parseUpstream,
} from "../serve/policy.js";
import { CACHE_FLAGS_HELP, CACHE_FLAG_OPTIONS, type CommandContext, cacheOptions } from "./cache-flags.js";
import { EXIT_OK, type Output, formatError, usageError } from "./output.js";

export const SERVE_HELP = `Usage: hubcache serve [flags]

Serves this machine's cache to everything that cannot see it (other machines, containers, TPU
workers, browsers): http://HOST:PORT/<host>/<path> is the model https://<host>/<path>, in TF Hub's
hosting protocol (?tf-hub-format=compressed, ?tf-hub-format=uncompressed, <file>?tfjs-format=file).
Models are downloaded once into the cache, however many clients ask. Prints
"listening on http://HOST:PORT" first on stdout, then one line per request on stderr.
Clients: HUBCACHE_MIRROR=http://HOST:PORT (see docs/serve.md).

Flags:
  --host HOST                address to listen on (default 127.0.0.1; 0.0.0.0 for a network)
  --port PORT                port (default 8080; 0 picks a free one)
  --upstream HOST=BASEURL    fetch HOST's models from BASEURL instead (repeatable); HOST is
                             then also allowed (default hosts: ${DEFAULT_HOSTS.join(", ")})
  --resolve HOST=ADDRESS     connect to ADDRESS (comma-separated: several) for HOST instead of
                             asking DNS, as curl --resolve (repeatable; not through a proxy)
  --token TOKEN              require "Authorization: Bearer TOKEN" (or HUBCACHE_SERVE_TOKEN)
  --cors ORIGINS             comma-separated origins browsers may read from (default: any
                             origin without a token, none with one)
  --max-downloads N          models downloaded from upstream at once (default 4)
${CACHE_FLAGS_HELP}
`;

const SERVE_FLAGS = {
  ...CACHE_FLAG_OPTIONS,
  host: { type: "string" },
  port: { type: "string" },
  upstream: { type: "string", multiple: true },
  resolve: { type: "string", multiple: true },
  token: { type: "string" },
  cors: { type: "string" },
  "max-downloads": { type: "string" },
} as const;

type ServeValues = ReturnType<
  typeof parseArgs<{ options: typeof SERVE_FLAGS; allowPositionals: true }>
>["values"];

/** Every `HOST=VALUE` flag parsed into a map, or the first usage message. */
function specMap<T>(
  specs: string[] | undefined,
  parse: (spec: string) => [string, T] | string,
): Map<string, T> | string {
  const map = new Map<string, T>();
  for (const spec of specs ?? []) {
    const parsed = parse(spec);
    if (typeof parsed === "string") return parsed;
    map.set(parsed[0], parsed[1]);
  }
  return map;
}

/** The allow-list, upstreams, address guard, token and CORS from the flags, or a usage message. */
function policyFrom(values: ServeValues, env: NodeJS.ProcessEnv): Policy | string {
  const upstreams = specMap(values.upstream, parseUpstream);
  if (typeof upstreams === "string") return upstreams;
  const pinned = specMap(values.resolve, parseResolve);
  if (typeof pinned === "string") return pinned;
  const token = values.token ?? (env.HUBCACHE_SERVE_TOKEN || undefined);
  const cors = values.cors
    ?.split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  return {
    hosts: new Set([...DEFAULT_HOSTS, ...upstreams.keys()]),
    upstreams,
    token,
    corsOrigins: cors ?? (token === undefined ? ["*"] : []),
    // Every upstream request and redirect is checked: no link-local, metadata or foreign private address.
    addressGuard: mirrorAddressGuard(upstreams, pinned),
  };
}

export async function serveCommand(
  args: readonly string[],
  out: Output,
  context: CommandContext & { signal?: AbortSignal | undefined },
): Promise<number> {
  let values: ServeValues;
  try {
    ({ values } = parseArgs({ args: [...args], allowPositionals: true, options: SERVE_FLAGS }));
  } catch (error) {
    return usageError(error instanceof Error ? error.message : String(error), out);
  }
  if (values.help) {
    out.stdout(SERVE_HELP);
    return EXIT_OK;
  }
  const port = Number(values.port ?? "8080");
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    return usageError(`--port must be 0-65535, not "${values.port}".`, out);
  }
  const maxDownloads = Number(values["max-downloads"] ?? "4");
  if (!Number.isInteger(maxDownloads) || maxDownloads < 1) {
    return usageError("--max-downloads must be a whole number >= 1.", out);
  }
  if (values.mirror !== undefined) {
    return usageError("serve does not read through another mirror (--mirror).", out);
  }
  const policy = policyFrom(values, context.env);
  if (typeof policy === "string") return usageError(policy, out);
  // No progress bar: stderr carries the access log. Notices and downloads are logged as lines.
  const setup = cacheOptions({ ...values, quiet: true }, out, { env: context.env, stderrIsTTY: false });
  if (typeof setup === "string") return usageError(setup, out);
  const onEvent = (event: HubcacheEvent): void => {
    if (values.quiet) return;
    if (
      ["download-start", "published", "lock-wait", "lock-takeover", "retry", "warning"].includes(event.type)
    ) {
      const text = describeEvent(event);
      if (text) out.stderr(`${text}\n`);
    }
  };
  const host = values.host ?? "127.0.0.1";
  // The server (node-tar, node:http) is loaded only by `serve`: every other command stays as quick
  // to start as before.
  const { createMirrorServer } = await import("../serve/server.js");
  let mirror;
  try {
    mirror = createMirrorServer({
      resolveOptions: { ...setup.options, onEvent },
      policy,
      maxUpstreamDownloads: maxDownloads,
      log: (line) => out.stderr(`${line}\n`),
    });
  } catch (error) {
    out.stderr(formatError(error));
    return 1;
  }
  let origin: string;
  try {
    origin = await mirror.listen(port, host);
  } catch (error) {
    out.stderr(
      `error[ERR_HUBCACHE_IO]: cannot listen on ${host}:${port}: ${error instanceof Error ? error.message : String(error)}\n`,
    );
    return 1;
  }
  out.stdout(`listening on ${origin}\n`);
  if (policy.token === undefined && !/^(127\.|::1$|localhost$)/.test(host)) {
    out.stderr(`notice: no --token: anyone who can reach ${origin} can read the cached models.\n`);
  }
  await untilStopped(context.signal);
  out.stderr("stopping: no new connections; finishing responses for up to 2 s\n");
  await mirror.close(2000);
  return EXIT_OK;
}

/** Until the command's signal aborts (the CLI's SIGINT/SIGTERM handling), else until either signal. */
function untilStopped(signal: AbortSignal | undefined): Promise<void> {
  if (signal) {
    return new Promise((resolve) => {
      if (signal.aborted) resolve();
      else signal.addEventListener("abort", () => resolve(), { once: true });
    });
  }
  return new Promise((resolve) => {
    const stop = (): void => {
      process.off("SIGTERM", stop);
      process.off("SIGINT", stop);
      resolve();
    };
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
  });
}
