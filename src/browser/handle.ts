/**
 * Browser-side handles: the canonical form a model is stored under, and the URLs its files are
 * read from (TF Hub's file protocol, directly or through a `hubcache serve` mirror). Pure: no I/O.
 */
import { ErrorCode, HubcacheError } from "../errors.js";

/** `tfjs-format=file`, the query TF.js's `fromTFHub` sends with every file of a model. */
export const FILE_QUERY = "tfjs-format=file";

/**
 * The handle a model is stored under: an http(s) URL with its host lower-cased (URL does that),
 * default port dropped, no fragment and no trailing slash. `https://tfhub.dev/x/1/` and
 * `https://TFHUB.dev/x/1` are one model. A query is refused: TF Hub handles have none, and TF.js
 * would append `/model.json` after it.
 */
export function canonicalHandle(handle: string): string {
  let url: URL | undefined;
  try {
    url = typeof handle === "string" ? new URL(handle) : undefined;
  } catch {
    url = undefined;
  }
  const hint =
    'Give the model\'s whole address, e.g. "https://tfhub.dev/google/tfjs-model/movenet/singlepose/lightning/4".';
  if (url === undefined || !/^https?:$/.test(url.protocol) || url.host === "") {
    throw new HubcacheError(ErrorCode.INVALID_HANDLE, `"${String(handle)}" is not an http(s) model URL.`, {
      handle: typeof handle === "string" ? handle : undefined,
      hint,
    });
  }
  if (url.search !== "") {
    throw new HubcacheError(ErrorCode.INVALID_HANDLE, `The model URL "${handle}" has a query.`, {
      handle,
      hint: `${hint} Without "?…": the files are read as <handle>/<file>?${FILE_QUERY}.`,
    });
  }
  const path = url.pathname.replace(/\/+$/, "");
  if (path === "") {
    throw new HubcacheError(ErrorCode.INVALID_HANDLE, `"${handle}" names no model (no path).`, {
      handle,
      hint,
    });
  }
  return `${url.protocol}//${url.host}${path}`;
}

/**
 * The URL of one file of a model: `<handle>/<file>?tfjs-format=file` as `fromTFHub` builds it, or,
 * through a mirror, `<mirror>/<host>/<path>/<file>?tfjs-format=file` (the mirror's scheme; the
 * mirror itself decides whether it reads the host over https).
 */
export function fileUrl(handle: string, file: string, mirror?: string): string {
  const encoded = file.split("/").map(encodeURIComponent).join("/");
  if (mirror === undefined) return `${handle}/${encoded}?${FILE_QUERY}`;
  const rest = handle.slice(handle.indexOf("://") + 3);
  return `${mirrorBase(mirror)}/${rest}/${encoded}?${FILE_QUERY}`;
}

/** A mirror's address without trailing slashes, checked. */
export function mirrorBase(mirror: string): string {
  let url: URL | undefined;
  try {
    url = new URL(mirror);
  } catch {
    url = undefined;
  }
  if (url === undefined || !/^https?:$/.test(url.protocol) || url.search !== "" || url.hash !== "") {
    throw new HubcacheError(ErrorCode.INVALID_CONFIG, `The mirror "${mirror}" is not an http(s) address.`, {
      hint: "Pass the address `hubcache serve` prints, e.g. http://10.0.0.5:8080.",
    });
  }
  return url.href.replace(/\/+$/, "");
}
