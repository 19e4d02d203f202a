/**
 * The mirror's refusals and failures as HTTP answers: a coded JSON body, the status a failed
 * resolve becomes, and one access log line per request.
 */
import type http from "node:http";
import { ErrorCode, HubcacheError } from "../errors.js";
import { redactUrl } from "../redact.js";
import { type Policy, corsHeaders } from "./policy.js";

/** A refusal the mirror makes itself (bad path, host not allowed, no token...). */
export class HttpProblem extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code: string = ErrorCode.NOT_FOUND,
  ) {
    super(message);
  }
}

/** The HTTP status a failed resolve becomes. */
function statusOf(error: HubcacheError): number {
  switch (error.code) {
    case ErrorCode.NOT_FOUND:
      return 404;
    case ErrorCode.INVALID_HANDLE:
    case ErrorCode.UNSUPPORTED:
      return 400;
    case ErrorCode.OFFLINE:
    case ErrorCode.ABORTED:
      return 503;
    case ErrorCode.TIMEOUT:
      return 504;
    default:
      return 502;
  }
}

/** Answer `error` (a drop when the answer has begun: never a short body that looks whole). */
export function sendProblem(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  error: unknown,
  policy: Policy,
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const problem =
    error instanceof HttpProblem
      ? { status: error.status, body: { code: error.code, message: error.message } }
      : error instanceof HubcacheError
        ? { status: statusOf(error), body: error.toJSON() }
        : { status: 500, body: { code: "ERR_HUBCACHE_INTERNAL", message: String(error) } };
  const body = `${JSON.stringify({ error: problem.body })}\n`;
  res.writeHead(problem.status, {
    ...corsHeaders(req, policy),
    "content-type": "application/json",
    "cache-control": "no-store",
    "content-length": String(Buffer.byteLength(body)),
    ...(problem.status === 401 ? { "www-authenticate": 'Bearer realm="hubcache"' } : {}),
  });
  res.end(req.method === "HEAD" ? undefined : body);
}

/** One access log line: time, client, request (redacted), status ("(cut)" if it did not finish), bytes, ms. */
export function accessLogLine(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  started: number,
  sent: number,
): string {
  const status = res.writableFinished ? res.statusCode : `${res.statusCode}(cut)`;
  const where = redactUrl(`http://mirror${req.url ?? "/"}`).slice("http://mirror".length);
  return `${new Date(started).toISOString()} ${req.socket.remoteAddress ?? "-"} "${req.method} ${where}" ${status} ${sent} ${Date.now() - started}ms`;
}
