/** HTTP failures as coded errors: status codes and network errors become HubcacheErrors with hints. */
import { ErrorCode, HubcacheError } from "../errors.js";
import { redactUrl } from "../redact.js";
import { networkErrorCode } from "./retry.js";

export type FetchFunction = typeof globalThis.fetch;

/** The host a person asked: the handle's when it is a URL, else the answering URL's. */
function askedHost(handle: string, url: string): string {
  for (const candidate of [handle, url]) {
    try {
      const { host } = new URL(candidate);
      if (host) return host;
    } catch {
      // not a URL: try the next
    }
  }
  return "the host";
}

const HUBS = /(^|\.)(tfhub\.dev|kaggle\.com)$/i;

/** An error for a failed HTTP answer, with a hint that fits the status and names the host asked. */
export function httpStatusError(status: number, handle: string, url: string): HubcacheError {
  const where = redactUrl(url);
  const host = askedHost(handle, url);
  const hub = HUBS.test(host.replace(/:\d+$/, ""));
  switch (status) {
    case 404:
    case 410:
      return new HubcacheError(
        ErrorCode.NOT_FOUND,
        `${handle} was not found (HTTP ${status} from ${where}).`,
        {
          handle,
          status,
          hint: hub
            ? "Check the handle's spelling and version; browse it on tfhub.dev or kaggle.com/models."
            : `Check the handle's spelling and version: ${host} has nothing at that path.`,
        },
      );
    case 401:
      return new HubcacheError(
        ErrorCode.UNAUTHORIZED,
        `${handle} needs credentials (HTTP 401 from ${where}).`,
        {
          handle,
          status,
          hint: `${host} wants credentials: pass ones it accepts (e.g. https://user:password@${host}/...); private and gated models are not public.`,
        },
      );
    case 403:
      return new HubcacheError(
        ErrorCode.FORBIDDEN,
        `Access to ${handle} was refused (HTTP 403 from ${where}).`,
        {
          handle,
          status,
          hint: hub
            ? "The model may be gated (accept its terms on kaggle.com), private, or the signed download link expired: check your credentials and try again."
            : `${host} refused access: the model may be private, or the signed download link expired. Check your credentials and try again.`,
        },
      );
    default:
      return new HubcacheError(
        ErrorCode.HTTP,
        `${handle} could not be fetched: HTTP ${status} from ${where}.`,
        {
          handle,
          status,
          hint: status >= 500 ? `${host} has a problem; try again later.` : "Check the handle.",
        },
      );
  }
}

const TLS_CODES = new Set([
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

const TIMEOUT_CODES = new Set([
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
  "HUBCACHE_IDLE_TIMEOUT",
  "ETIMEDOUT",
]);

function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return redactUrl(url);
  }
}

/** The messages of an error and its causes, outermost first. */
function causeMessages(error: unknown): string[] {
  const out: string[] = [];
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current instanceof Error; depth++) {
    out.push(current.message);
    current = current.cause;
  }
  return out;
}

interface Failure {
  code: ErrorCode;
  /** The message, given the redacted URL and the handle. */
  message: string;
  hint: string;
}

/** What a failure with this error code (or message) means, for a request to `url`. */
function classifyFailure(error: unknown, code: string | undefined, url: string, handle: string): Failure {
  const where = redactUrl(url);
  if (code !== undefined && TIMEOUT_CODES.has(code)) {
    const what = code === "UND_ERR_CONNECT_TIMEOUT" ? "connecting to" : "waiting for an answer from";
    return {
      code: ErrorCode.TIMEOUT,
      message: `Timed out ${what} ${where} for ${handle} (${code}).`,
      hint: "Check your network and proxy (HTTPS_PROXY). Slow links can raise HUBCACHE_CONNECT_TIMEOUT / HUBCACHE_IDLE_TIMEOUT (seconds).",
    };
  }
  if (code !== undefined && TLS_CODES.has(code)) {
    return {
      code: ErrorCode.NETWORK,
      message: `The TLS certificate of ${where} was not accepted for ${handle} (${code}).`,
      hint: "If a corporate proxy re-signs TLS, add its CA with NODE_EXTRA_CA_CERTS=ca.pem. TFHUB_DISABLE_CERT_VALIDATION=true turns checking off (unsafe).",
    };
  }
  if (code === "ECONNREFUSED") {
    return {
      code: ErrorCode.NETWORK,
      message: `The connection to ${hostOf(url)} was refused for ${handle} (ECONNREFUSED).`,
      hint: `Nothing accepts connections at ${hostOf(url)}: check the host name and port, that the server is up, and the proxy settings (HTTPS_PROXY, NO_PROXY).`,
    };
  }
  const proxyMessage = causeMessages(error).find((text) => /proxy/i.test(text));
  if (proxyMessage !== undefined) {
    return {
      code: ErrorCode.NETWORK,
      message: `The proxy refused to fetch ${where} for ${handle} (${proxyMessage}).`,
      hint: "Check HTTP_PROXY / HTTPS_PROXY (and credentials in them) and NO_PROXY.",
    };
  }
  const cause = (error as { cause?: { message?: string } } | null)?.cause;
  const detail = code ?? cause?.message ?? (error instanceof Error ? error.message : String(error));
  return {
    code: ErrorCode.NETWORK,
    message: `Could not reach ${where} for ${handle} (${detail}).`,
    hint: "Check your network, proxy (HTTPS_PROXY, NO_PROXY) and the host name. Cached models still resolve offline (HUBCACHE_OFFLINE=1).",
  };
}

/** A request that failed before any answer: a coded error that says what to check. */
export function networkError(error: unknown, handle: string, url: string): HubcacheError {
  if (error instanceof HubcacheError) return error;
  if (error instanceof Error && error.name === "AbortError") {
    return new HubcacheError(ErrorCode.ABORTED, `Fetching ${handle} was aborted.`, {
      handle,
      hint: "The caller's AbortSignal fired; nothing was cached.",
      cause: error,
    });
  }
  const failure = classifyFailure(error, networkErrorCode(error), url, handle);
  return new HubcacheError(failure.code, failure.message, { handle, hint: failure.hint, cause: error });
}
