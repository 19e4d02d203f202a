/**
 * `hubcache serve`: a read-through host for everything that cannot see the cache (another machine,
 * a container, a TPU worker, a browser), and a pull-through mirror for a team. Its cache is an
 * ordinary hubcache cache, filled with the library's own resolve() (same locks, shared with local
 * resolves and Python); requests name models by their canonical handles (request-path.ts).
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { handleHash } from "../cache/layout.js";
import { ErrorCode } from "../errors.js";
import { type ResolveOptions, resolveSettings } from "../settings.js";
import { type ArchiveEncoding, chooseArchiveEncoding, serveArchive } from "./archive.js";
import { cachedModels } from "./cached-models.js";
import { entryFileSet, sendFileSet } from "./file-set-answer.js";
import { serveFile } from "./files.js";
import { listEntries } from "../manage/list.js";
import { indexPage } from "./page.js";
import { type Policy, authorized, corsHeaders, preflightHeaders } from "./policy.js";
import { type MirrorRequest, isVersionedHandle, parseMirrorRequest } from "./request-path.js";
import { upstreamRoute } from "../net/route.js";
import { type Flight, ModelFlights } from "./flights.js";
import { serveFromSpool } from "./stream-archive.js";
import type { ModelFormat } from "../handle.js";
import { acceptsAny, headerValue } from "./headers.js";
import { HttpProblem, accessLogLine, sendProblem } from "./problems.js";

export interface MirrorServerOptions {
  /** Cache settings, as for resolve (cacheDir, sharedCache, lock timeout, env, onEvent...). */
  resolveOptions: ResolveOptions;
  policy: Policy;
  /** Most models downloaded from upstream at once (default 4); cache hits are never queued. */
  maxUpstreamDownloads?: number;
  /** One line per request (already redacted). */
  log?: (line: string) => void;
  /** How long a socket may sit without progress while a response is being sent, ms (default 60 s). */
  sendIdleTimeoutMs?: number;
}

export interface MirrorServer {
  server: http.Server;
  /** Listen; resolves with the origin (`http://HOST:PORT`, the real port when 0 is asked). */
  listen(port: number, host: string): Promise<string>;
  /** Stop accepting, let responses finish for `graceMs`, then drop them and cancel downloads. */
  close(graceMs?: number): Promise<void>;
}

/** The host a handle names ("" when it is no URL, which no allow-list holds). */
function hostOf(handle: string): string {
  try {
    return new URL(handle).host.toLowerCase();
  } catch {
    return "";
  }
}

export function createMirrorServer(options: MirrorServerOptions): MirrorServer {
  const { policy } = options;
  const cacheDir = resolveSettings(options.resolveOptions).cacheDir;
  const route = upstreamRoute(policy.upstreams, policy.addressGuard);
  const lifetime = new AbortController();
  const flights = new ModelFlights({
    resolveOptions: options.resolveOptions,
    route,
    signal: lifetime.signal,
    maxDownloads: options.maxUpstreamDownloads ?? 4,
  });
  const handlesByHash = new Map<string, string>();
  const sendIdleMs = options.sendIdleTimeoutMs ?? 60_000;

  /** The model's flight: one download however many requests ask. */
  const flightFor = (handle: string, modelFormat: ModelFormat): Flight => {
    const flight = flights.ensure(handle, modelFormat);
    // Remembered once it is cached (for /_files/<hash>); failed handles are not kept.
    flight.done.then(() => handlesByHash.set(handleHash(handle), handle)).catch(() => undefined);
    return flight;
  };

  /** The model's location in the cache, downloading it once however many requests ask. */
  const ensureModel = (handle: string, modelFormat: ModelFormat): Promise<string> =>
    flightFor(handle, modelFormat).done;

  /** A cold archive's bytes as they arrive (true), or false: answer from the cache once it is there. */
  const streamArchive = async (
    req: http.IncomingMessage,
    res: http.ServerResponse,
    request: Extract<MirrorRequest, { kind: "archive" | "uncompressed" }>,
    flight: Flight,
  ): Promise<boolean> => {
    // The spool is in the mirror's temp dir, whether the cache dir is local or a bucket.
    if (req.method === "HEAD") return false;
    const reader = await flight.follow();
    if (!reader) return false;
    const asked = {
      bodyForm: request.bodyForm,
      encoding: chooseArchiveEncoding(req, request.bodyForm),
      idleMs: sendIdleMs,
    };
    return serveFromSpool(req, res, reader, asked, commonHeaders(req, policy, request.handle));
  };

  /** The files of cached models, in a local cache dir or a bucket alike (cached-models.ts). */
  const models = cachedModels(cacheDir, options.resolveOptions);

  const handleForHash = async (hash: string): Promise<string> => {
    const known = handlesByHash.get(hash);
    if (known) return known;
    const fromDescriptor = await models.descriptorHandle(hash);
    if (fromDescriptor === undefined || handleHash(fromDescriptor) !== hash) {
      throw new HttpProblem(404, "no such entry");
    }
    return fromDescriptor;
  };

  const serveModelFile = async (
    req: http.IncomingMessage,
    res: http.ServerResponse,
    handle: string,
    file: string,
    modelFormat: ModelFormat,
  ): Promise<void> => {
    const hash = handleHash(handle);
    const files =
      (await models.recentFiles(hash)) ??
      (await models.filesAt(await ensureModel(handle, modelFormat), hash));
    // Relative to the model's folder (its one wrapping folder, if any), as load finds it.
    const target = await files.stat((await files.modelRoot()) + file);
    if (target === undefined) throw new HttpProblem(404, `${handle} has no file ${file}`);
    req.socket.setTimeout(sendIdleMs);
    await serveFile(req, res, { files, file: target, headers: commonHeaders(req, policy, handle) });
  };

  const answer = async (
    request: MirrorRequest,
    req: http.IncomingMessage,
    res: http.ServerResponse,
  ): Promise<void> => {
    switch (request.kind) {
      case "invalid":
        throw new HttpProblem(request.status, request.message, "ERR_HUBCACHE_USAGE");
      case "index":
        return sendIndex(req, res, options.resolveOptions, policy);
      case "archive": {
        checkHost(policy, request.host);
        const hash = handleHash(request.handle);
        let files = await models.recentFiles(hash);
        if (!files) {
          const flight = flightFor(request.handle, request.modelFormat);
          if (await streamArchive(req, res, request, flight)) return;
          files = await models.filesAt(await flight.done, hash);
        }
        req.socket.setTimeout(sendIdleMs);
        const fileSet = await entryFileSet(req, request.handle, files);
        if (fileSet) return sendFileSet(req, res, fileSet, commonHeaders(req, policy, request.handle));
        const encoding: ArchiveEncoding = chooseArchiveEncoding(req, request.bodyForm);
        await serveArchive(req, res, files, encoding, commonHeaders(req, policy, request.handle));
        return;
      }
      case "uncompressed": {
        checkHost(policy, request.host);
        await ensureModel(request.handle, request.modelFormat);
        return seeOtherToFiles(req, res, request.handle, policy);
      }
      case "file":
        checkHost(policy, request.host);
        return serveModelFile(req, res, request.handle, request.file, "tfjs");
      case "entry-file": {
        const handle = await handleForHash(request.hash);
        checkHost(policy, hostOf(handle));
        if (request.file === "") throw new HttpProblem(404, "name a file of the model");
        return serveModelFile(req, res, handle, request.file, "auto");
      }
    }
  };

  const handler = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    if (!admitted(req, res, policy)) return;
    // While the model is fetched the socket may be quiet for long; it is bounded again once bytes flow.
    req.socket.setTimeout(0);
    await answer(parseMirrorRequest(req.url ?? "/"), req, res);
  };

  const { server, responses } = boundedServer(handler, policy, sendIdleMs, options.log);
  return {
    server,
    listen: (port, host) => listenOn(server, port, host),
    close: (graceMs = 2000) =>
      closeGracefully(server, responses, graceMs, () => {
        lifetime.abort();
        return flights.settled();
      }),
  };
}

/**
 * Stop accepting, let open responses finish for `graceMs`, then `cancel` the downloads and drop the
 * connections; waits at most 2 s more for the downloads to wind down.
 */
async function closeGracefully(
  server: http.Server,
  responses: Set<http.ServerResponse>,
  graceMs: number,
  cancel: () => Promise<void>,
): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  const deadline = Date.now() + graceMs;
  while (responses.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  const cancelled = cancel();
  server.closeAllConnections();
  await Promise.race([cancelled, new Promise((r) => setTimeout(r, 2000))]);
  await closed;
}

/**
 * Whether the request may be answered: a CORS preflight is answered here (false); a method other
 * than GET or HEAD, or a missing or wrong token, is refused with its coded problem.
 */
function admitted(req: http.IncomingMessage, res: http.ServerResponse, policy: Policy): boolean {
  if (req.method === "OPTIONS") {
    res.writeHead(204, preflightHeaders(req, policy)).end();
    return false;
  }
  if (req.method !== "GET" && req.method !== "HEAD") {
    throw new HttpProblem(405, "only GET and HEAD are served", ErrorCode.UNSUPPORTED);
  }
  if (!authorized(req, policy.token)) {
    throw new HttpProblem(401, "this mirror needs Authorization: Bearer <token>", ErrorCode.UNAUTHORIZED);
  }
  return true;
}

function checkHost(policy: Policy, host: string): void {
  if (!policy.hosts.has(host)) {
    throw new HttpProblem(
      403,
      `${host} is not a host this mirror serves (allowed: ${[...policy.hosts].join(", ")}).`,
      ErrorCode.FORBIDDEN,
    );
  }
}

/** CORS and caching headers of a model's answers: versioned handles never change. */
function commonHeaders(req: http.IncomingMessage, policy: Policy, handle: string): Record<string, string> {
  const shared = policy.token === undefined ? "public" : "private";
  return {
    ...corsHeaders(req, policy),
    "cache-control": isVersionedHandle(handle)
      ? `${shared}, max-age=31536000, immutable`
      : `${shared}, no-cache`,
  };
}

/**
 * The HTTP server around `handler`: header and request limits, the send timeout, one access log line
 * per response, a coded problem for any error; `responses` holds those still open (for close()).
 */
function boundedServer(
  handler: (req: http.IncomingMessage, res: http.ServerResponse) => Promise<void>,
  policy: Policy,
  sendIdleMs: number,
  log: ((line: string) => void) | undefined,
): { server: http.Server; responses: Set<http.ServerResponse> } {
  const responses = new Set<http.ServerResponse>();
  const server = http.createServer(
    { maxHeaderSize: 16 * 1024, headersTimeout: 20_000, requestTimeout: 30_000, keepAliveTimeout: 5_000 },
    (req, res) => {
      const started = Date.now();
      const sentBefore = req.socket.bytesWritten;
      responses.add(res);
      res.once("close", () => {
        responses.delete(res);
        log?.(accessLogLine(req, res, started, req.socket.bytesWritten - sentBefore));
      });
      handler(req, res).catch((error: unknown) => sendProblem(req, res, error, policy));
    },
  );
  server.timeout = sendIdleMs;
  server.maxConnections = 4096;
  return { server, responses };
}

/** `GET /`: the cached models, as `hubcache ls --json` gives them or as a small HTML page. */
async function sendIndex(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  resolveOptions: ResolveOptions,
  policy: Policy,
): Promise<void> {
  const listing = await listEntries({ ...resolveOptions, onEvent: undefined });
  const json = acceptsAny(headerValue(req, "accept"), ["application/json"]);
  const body = json ? `${JSON.stringify(listing, null, 2)}\n` : indexPage(listing, req.headers.host);
  res.writeHead(200, {
    ...corsHeaders(req, policy),
    "content-type": json ? "application/json" : "text/html; charset=utf-8",
    "cache-control": "no-store",
    "content-length": String(Buffer.byteLength(body)),
  });
  res.end(req.method === "HEAD" ? undefined : body);
}

/** UNCOMPRESSED: 303 to the folder on this mirror from which each file of the model is read. */
function seeOtherToFiles(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  handle: string,
  policy: Policy,
): void {
  const host = req.headers.host && /^[\w.:[\]-]+$/.test(req.headers.host) ? req.headers.host : "";
  const location = `http://${host}/_files/${handleHash(handle)}`;
  res.writeHead(303, { ...corsHeaders(req, policy), "content-type": "text/plain", location });
  res.end(req.method === "HEAD" ? undefined : location);
}

/** Listen; resolves with the origin (`http://HOST:PORT`, the real port when 0 is asked). */
function listenOn(server: http.Server, port: number, host: string): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      const address = server.address() as AddressInfo;
      const shown = address.family === "IPv6" ? `[${address.address}]` : address.address;
      resolve(`http://${shown}:${address.port}`);
    });
  });
}
