/**
 * TF Hub's UNCOMPRESSED mode: `GET handle?tf-hub-format=uncompressed` must answer 303 See Other
 * with the model's location in the body. Nothing is downloaded or cached.
 */
import { ErrorCode, HubcacheError } from "../errors.js";
import type { ParsedHandle } from "../handle.js";
import { redactUrl } from "../redact.js";
import { USER_AGENT } from "../version.js";
import { type FetchFunction, httpStatusError, networkError } from "./http-errors.js";

const LOCATION_SCHEMES = /^(gs|s3|https?):\/\//;

export async function resolveUncompressed(
  parsed: Extract<ParsedHandle, { kind: "http-uncompressed" }>,
  options: { fetch?: FetchFunction | undefined; signal?: AbortSignal | undefined },
): Promise<string> {
  const { handle, requestUrl } = parsed;
  const fetchImpl = options.fetch ?? globalThis.fetch;
  let response: Response;
  try {
    response = await fetchImpl(requestUrl, {
      headers: { "user-agent": USER_AGENT },
      redirect: "manual",
      signal: options.signal ?? null,
    });
  } catch (error) {
    throw networkError(error, handle, requestUrl);
  }
  const body = (await response.text().catch(() => "")).trim();
  if (response.status !== 303) {
    if (response.status >= 400 && response.status !== 404) {
      throw httpStatusError(response.status, handle, requestUrl);
    }
    throw new HubcacheError(
      ErrorCode.UNEXPECTED_RESPONSE,
      `Expected 303 See other HTTP response but received code ${response.status} for ${handle}.`,
      {
        handle,
        status: response.status,
        hint: "This host does not serve models in UNCOMPRESSED mode. Unset TFHUB_MODEL_LOAD_FORMAT (or use COMPRESSED) to download and cache it.",
      },
    );
  }
  if (!LOCATION_SCHEMES.test(body)) {
    throw new HubcacheError(
      ErrorCode.UNEXPECTED_RESPONSE,
      `Expected the host to return a storage location for ${handle} but received "${redactUrl(body.slice(0, 200))}".`,
      {
        handle,
        status: 303,
        hint: "The host answered 303 without a gs://, s3:// or http(s):// location in its body.",
      },
    );
  }
  return body;
}
