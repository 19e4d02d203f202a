/**
 * `hubcache serve` as a child process for the mirror tests: started with --port 0, its origin read
 * from the first stdout line; plus small raw-HTTP helpers (node:http sends a path exactly as given,
 * so traversal attempts reach the server unnormalised).
 */
import http from "node:http";
import { type Running, startCli, waitUntil } from "./processes.js";

export interface Mirror {
  origin: string;
  run: Running;
  /** Stop it with SIGTERM and wait for the exit. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }>;
}

export async function startMirror(
  args: string[],
  env: Record<string, string | undefined> = {},
): Promise<Mirror> {
  const run = startCli(["serve", "--port", "0", ...args], { env });
  let stdout = "";
  run.child.stdout?.on("data", (chunk: string) => (stdout += chunk));
  let exited = false;
  void run.done.then(() => (exited = true));
  await waitUntil(() => stdout.includes("\n") || exited, "the mirror's first line", 30_000);
  const first = stdout.split("\n")[0] ?? "";
  const match = /^listening on (http:\/\/\S+)$/.exec(first);
  if (!match?.[1]) throw new Error(`the mirror did not start: ${first}\n${run.stderr()}`);
  return {
    origin: match[1],
    run,
    stop: async () => {
      const started = Date.now();
      run.child.kill("SIGTERM");
      const finished = await run.done;
      return { code: finished.code, signal: finished.signal, ms: Date.now() - started };
    },
  };
}

/** The mirror's access log so far (its stderr), as "METHOD path status" lines. */
export function mirrorLog(mirror: Mirror): string[] {
  return mirror.run
    .stderr()
    .split("\n")
    .map((line) => /"(GET|HEAD) ([^"]+)" (\S+)/.exec(line))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => `${m[1]} ${m[2]} ${m[3]}`);
}

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** One request with the path sent byte for byte as given. */
export function rawRequest(
  origin: string,
  requestPath: string,
  options: { method?: string; headers?: Record<string, string> } = {},
): Promise<RawResponse> {
  const url = new URL(origin);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: url.hostname,
        port: url.port,
        path: requestPath,
        method: options.method ?? "GET",
        headers: options.headers ?? {},
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
        );
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end();
  });
}
