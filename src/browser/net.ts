/**
 * One file over the network, in the browser: fetch, HTTP status → coded error, the body read with
 * progress, and the digest checks the server offers (Repr-Digest, Content-Digest or Digest with
 * sha-256 or sha-512; ETag is kept, never trusted as a digest).
 */
import { ErrorCode, HubcacheError, abortedError, isAbortError } from "../errors.js";
import { redactUrl } from "../redact.js";

export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

export interface FetchedFile {
  bytes: Uint8Array;
  /** The server's ETag, if it sent (and exposed) one. */
  etag: string | undefined;
  /** The sha-256 the server vouched for (base64), when it sent one and the bytes matched it. */
  sha256: string | undefined;
}

export interface FileRequest {
  url: string;
  handle: string;
  file: string;
  headers: Record<string, string>;
  fetch: FetchLike;
  signal: AbortSignal | undefined;
  /** Called with the bytes received so far (of this file) and its Content-Length. */
  onBytes: (loaded: number, total: number | undefined) => void;
}

function statusError(status: number, request: FileRequest): HubcacheError {
  const where = `${request.file} of ${request.handle} (${redactUrl(request.url)})`;
  const options = { handle: request.handle, status };
  if (status === 404) {
    return new HubcacheError(ErrorCode.NOT_FOUND, `The host has no ${where}: HTTP 404.`, {
      ...options,
      hint: "Check the handle (a TF.js model, the right version); the host serves files as <handle>/<file>?tfjs-format=file.",
    });
  }
  if (status === 401) {
    return new HubcacheError(ErrorCode.UNAUTHORIZED, `Reading ${where} needs credentials: HTTP 401.`, {
      ...options,
      hint: "For a hubcache serve mirror started with --token, pass the same token as the `token` option.",
    });
  }
  if (status === 403) {
    return new HubcacheError(ErrorCode.FORBIDDEN, `Reading ${where} was refused: HTTP 403.`, {
      ...options,
      hint: "The model may be private or gated, or the token is wrong.",
    });
  }
  return new HubcacheError(ErrorCode.HTTP, `Reading ${where} failed: HTTP ${status}.`, {
    ...options,
    hint: status >= 500 ? "The host had a problem; try again later." : undefined,
  });
}

async function send(request: FileRequest): Promise<Response> {
  try {
    const init: RequestInit = { headers: request.headers };
    if (request.signal) init.signal = request.signal;
    return await request.fetch(request.url, init);
  } catch (error) {
    if (request.signal?.aborted || isAbortError(error)) {
      throw abortedError(request.handle, `Downloading ${request.file}`, request.signal?.reason ?? error);
    }
    throw new HubcacheError(ErrorCode.NETWORK, `Could not reach ${redactUrl(request.url)}.`, {
      handle: request.handle,
      hint: "Check the network. A page on another origin also needs the host to send Access-Control-Allow-Origin (CORS): the browser's console names the reason.",
      cause: error,
    });
  }
}

async function readBody(response: Response, request: FileRequest): Promise<Uint8Array> {
  const length = Number(response.headers.get("content-length") ?? NaN);
  const total = Number.isFinite(length) ? length : undefined;
  if (response.body === null) return new Uint8Array(await response.arrayBuffer());
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let loaded = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      loaded += value.byteLength;
      request.onBytes(loaded, total);
    }
  } catch (error) {
    if (request.signal?.aborted || isAbortError(error)) {
      throw abortedError(request.handle, `Downloading ${request.file}`, request.signal?.reason ?? error);
    }
    throw new HubcacheError(ErrorCode.NETWORK, `The download of ${redactUrl(request.url)} broke off.`, {
      handle: request.handle,
      hint: "Check the network and try again; nothing was stored.",
      cause: error,
    });
  }
  if (chunks.length === 1 && chunks[0]?.byteLength === chunks[0]?.buffer.byteLength) return chunks[0]!;
  const bytes = new Uint8Array(loaded);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return bytes;
}

/** GET one file; its body whole, checked against the server's digest when it gives one. */
export async function fetchFile(request: FileRequest): Promise<FetchedFile> {
  const response = await send(request);
  if (!response.ok) {
    void response.body?.cancel().catch(() => undefined);
    throw statusError(response.status, request);
  }
  const bytes = await readBody(response, request);
  const sha256 = await checkDigest(response.headers, bytes, request);
  return { bytes, etag: response.headers.get("etag") ?? undefined, sha256 };
}

/** The digests a response vouches for: algorithm ("sha-256") → base64 value. */
export function offeredDigests(headers: Headers): Map<string, string> {
  const found = new Map<string, string>();
  // RFC 9530: `sha-256=:<base64>:`. Content-Digest is of the encoded body: only without an encoding.
  const structured = [headers.get("repr-digest")];
  if (!headers.get("content-encoding")) structured.push(headers.get("content-digest"));
  for (const header of structured) {
    for (const match of (header ?? "").matchAll(/(sha-(?:256|512))\s*=\s*:([A-Za-z0-9+/=]+):/gi)) {
      found.set(match[1]!.toLowerCase(), match[2]!);
    }
  }
  // RFC 3230: `SHA-256=<base64>`.
  for (const match of (headers.get("digest") ?? "").matchAll(/(sha-(?:256|512))\s*=\s*([A-Za-z0-9+/=]+)/gi)) {
    if (!found.has(match[1]!.toLowerCase())) found.set(match[1]!.toLowerCase(), match[2]!);
  }
  return found;
}

export async function digestBase64(algorithm: "sha-256" | "sha-512", bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest(algorithm.toUpperCase(), bytes as BufferSource));
  let binary = "";
  for (const byte of digest) binary += String.fromCharCode(byte);
  return btoa(binary);
}

async function checkDigest(
  headers: Headers,
  bytes: Uint8Array,
  request: FileRequest,
): Promise<string | undefined> {
  let sha256: string | undefined;
  for (const [algorithm, expected] of offeredDigests(headers)) {
    const actual = await digestBase64(algorithm as "sha-256" | "sha-512", bytes);
    if (actual !== expected) {
      throw new HubcacheError(
        ErrorCode.CORRUPT,
        `${request.file} of ${request.handle} does not match the ${algorithm} digest the server sent (${expected}, got ${actual}).`,
        {
          handle: request.handle,
          hint: "The download was damaged on the way; nothing was stored. Try again.",
        },
      );
    }
    if (algorithm === "sha-256") sha256 = actual;
  }
  return sha256;
}
