/**
 * Pure handle parsing: no I/O, no environment. A handle string becomes a typed description of
 * what to fetch. Matches tensorflow_hub's resolver choice (see docs in README "Handles").
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ErrorCode, HubcacheError } from "./errors.js";

/** TF Hub's load formats (`TFHUB_MODEL_LOAD_FORMAT`). Case-sensitive, as in TF Hub, but validated. */
export type LoadFormat = "COMPRESSED" | "UNCOMPRESSED" | "AUTO";

/** Which hosting-protocol family a handle belongs to: it picks the query parameter sent to the host. */
export type ModelFormat = "auto" | "saved-model" | "tfjs";

export type ObjectScheme = "gs" | "s3";

export type ParsedHandle =
  | {
      /** An http(s) handle fetched as an archive (TF Hub's compressed mode). */
      kind: "http-archive";
      handle: string;
      /** The URL that is actually requested. */
      downloadUrl: string;
      /** "saved-model" or "tfjs": which `*-format=compressed` parameter was appended (none for direct URLs). */
      modelFormat: Exclude<ModelFormat, "auto">;
    }
  | {
      /** An http(s) handle in UNCOMPRESSED mode: the host answers 303 with the model's location. */
      kind: "http-uncompressed";
      handle: string;
      requestUrl: string;
      modelFormat: Exclude<ModelFormat, "auto">;
    }
  | {
      /** `gs://` or `s3://` object ending in .tar, .tar.gz or .tgz: downloaded and extracted like http archives. */
      kind: "object-archive";
      handle: string;
      scheme: ObjectScheme;
      bucket: string;
      key: string;
    }
  | {
      /** `gs://` or `s3://` model folder, used in place. */
      kind: "object-folder";
      handle: string;
      scheme: ObjectScheme;
      bucket: string;
      prefix: string;
    }
  | {
      /** A local path or `file://` URL, used in place. */
      kind: "path";
      handle: string;
      path: string;
    };

export interface ParseHandleOptions {
  loadFormat?: LoadFormat;
  /** Force the protocol family; "auto" (default) detects TF.js handles from the URL. */
  modelFormat?: ModelFormat;
  /** Base for relative local paths. Default: the process's working directory. */
  cwd?: string;
}

export const CHINA_MIRROR_PREFIX = "https://hub.tensorflow.google.cn/";
const CHINA_MIRROR_TEMPLATE = (rest: string): string =>
  `https://gcs.tensorflow.google.cn/tfhub-modules/${rest}.tar.gz`;

const ARCHIVE_SUFFIX = /\.(tar|tar\.gz|tgz)$/;

export function parseHandle(handle: string, options: ParseHandleOptions = {}): ParsedHandle {
  if (typeof handle !== "string" || handle.length === 0) {
    throw new HubcacheError(ErrorCode.INVALID_HANDLE, "A model handle must be a non-empty string.", {
      hint: 'Pass a URL such as "https://tfhub.dev/google/yamnet/1", a gs:// or s3:// location, or a local path.',
    });
  }
  const loadFormat = options.loadFormat ?? "AUTO";
  const lower = handle.slice(0, 8).toLowerCase();

  if (lower.startsWith("http://") || lower.startsWith("https://")) {
    checkHttpUrl(handle);
    const modelFormat = detectModelFormat(handle, options.modelFormat ?? "auto");
    const param = modelFormat === "tfjs" ? "tfjs-format" : "tf-hub-format";
    if (loadFormat === "UNCOMPRESSED") {
      return {
        kind: "http-uncompressed",
        handle,
        requestUrl: appendFormatQuery(handle, param, "uncompressed"),
        modelFormat,
      };
    }
    const downloadUrl = handle.startsWith(CHINA_MIRROR_PREFIX)
      ? CHINA_MIRROR_TEMPLATE(handle.slice(CHINA_MIRROR_PREFIX.length))
      : appendFormatQuery(handle, param, "compressed");
    return { kind: "http-archive", handle, downloadUrl, modelFormat };
  }

  const objectMatch = /^(gs|s3):\/\/([^/]*)\/?(.*)$/.exec(handle);
  if (objectMatch) {
    const scheme = objectMatch[1] as ObjectScheme;
    const bucket = objectMatch[2] ?? "";
    const rest = objectMatch[3] ?? "";
    if (!bucket) {
      throw new HubcacheError(ErrorCode.INVALID_HANDLE, `"${handle}" names no bucket.`, {
        handle,
        hint: `Write it as ${scheme}://BUCKET/path/to/model.`,
      });
    }
    if (ARCHIVE_SUFFIX.test(rest)) return { kind: "object-archive", handle, scheme, bucket, key: rest };
    return { kind: "object-folder", handle, scheme, bucket, prefix: rest.replace(/\/+$/, "") };
  }

  if (/^file:\/\//i.test(handle)) {
    let filePath: string;
    try {
      filePath = fileURLToPath(handle);
    } catch (cause) {
      throw new HubcacheError(ErrorCode.INVALID_HANDLE, `"${handle}" is not a valid file:// URL.`, {
        handle,
        hint: "Use file:///absolute/path or a plain path.",
        cause,
      });
    }
    return { kind: "path", handle, path: filePath };
  }

  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(handle)) {
    const scheme = handle.slice(0, handle.indexOf(":"));
    throw new HubcacheError(ErrorCode.UNSUPPORTED, `The "${scheme}://" scheme is not supported.`, {
      handle,
      hint: "Supported handles: http(s):// URLs, gs:// and s3:// locations, file:// URLs and local paths.",
    });
  }

  return { kind: "path", handle, path: path.resolve(options.cwd ?? process.cwd(), handle) };
}

/**
 * An http(s) handle must be a URL with a host: "https://" alone, "http:///x" (which URL parsers
 * would read as host "x") or "https://?a" are typing mistakes, said as such before any network.
 */
function checkHttpUrl(handle: string): void {
  const start = handle.indexOf("://") + 3;
  const authorityEnd = handle.slice(start).search(/[/?#\\]/);
  const authority = authorityEnd === -1 ? handle.slice(start) : handle.slice(start, start + authorityEnd);
  const host = authority.slice(authority.lastIndexOf("@") + 1).replace(/:\d*$/, "");
  let valid = host.length > 0;
  try {
    if (valid) new URL(handle);
  } catch {
    valid = false;
  }
  if (valid) return;
  throw new HubcacheError(
    ErrorCode.INVALID_HANDLE,
    host.length === 0
      ? `"${handle}" is not a model URL: it names no host.`
      : `"${handle}" is not a valid URL.`,
    {
      handle,
      hint: 'Give the whole address of the model, e.g. "https://tfhub.dev/google/yamnet/1" or "https://www.kaggle.com/models/google/yamnet/TensorFlow2/yamnet/1"; quote it in a shell.',
    },
  );
}

/**
 * A TF.js handle: a `tfjs-model` path segment (tfhub.dev's form), or Kaggle Models' shape
 * `/models/<owner>/<model>/tfjs/...` (`/tfJs/`, `/TfJs/`, `/frameworks/tfJs/`). The host is not
 * checked, so mirrors and self-hosted copies of the hub are recognised too.
 */
export function detectModelFormat(handle: string, requested: ModelFormat): Exclude<ModelFormat, "auto"> {
  if (requested !== "auto") return requested;
  let segments: string[];
  try {
    segments = new URL(handle).pathname.split("/").filter(Boolean);
  } catch {
    return "saved-model";
  }
  if (segments.includes("tfjs-model")) return "tfjs";
  const models = segments.indexOf("models");
  if (models !== -1 && segments.slice(models + 3).some((s) => s.toLowerCase() === "tfjs")) return "tfjs";
  return "saved-model";
}

/**
 * Append `key=value` to a URL's query exactly as tensorflow_hub does it: Python's `parse_qsl`
 * (blank values dropped, `+` and %XX decoded), the pair appended (never replaced), then
 * `urlencode` (quote_plus), the fragment kept.
 */
export function appendFormatQuery(url: string, key: string, value: string): string {
  const hashIndex = url.indexOf("#");
  const fragment = hashIndex === -1 ? "" : url.slice(hashIndex + 1);
  const beforeFragment = hashIndex === -1 ? url : url.slice(0, hashIndex);
  const queryIndex = beforeFragment.indexOf("?");
  const base = queryIndex === -1 ? beforeFragment : beforeFragment.slice(0, queryIndex);
  const query = queryIndex === -1 ? "" : beforeFragment.slice(queryIndex + 1);

  const pairs: [string, string][] = [];
  for (const piece of query.split("&")) {
    if (!piece) continue;
    const eq = piece.indexOf("=");
    const name = pythonUnquotePlus(eq === -1 ? piece : piece.slice(0, eq));
    const val = eq === -1 ? "" : pythonUnquotePlus(piece.slice(eq + 1));
    if (val.length === 0) continue; // parse_qsl(keep_blank_values=False)
    pairs.push([name, val]);
  }
  pairs.push([key, value]);
  const encoded = pairs.map(([n, v]) => `${pythonQuotePlus(n)}=${pythonQuotePlus(v)}`).join("&");
  return `${base}?${encoded}${fragment ? `#${fragment}` : ""}`;
}

/** Python's `urllib.parse.quote_plus(s, safe='')`: only `A-Za-z0-9_.-~` stay literal. */
export function pythonQuotePlus(text: string): string {
  return encodeURIComponent(text)
    .replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
    .replace(/%20/g, "+");
}

/** Python's `unquote_plus`: `+` is a space; malformed %-escapes are kept as they are. */
export function pythonUnquotePlus(text: string): string {
  const spaced = text.replace(/\+/g, " ");
  return spaced.replace(/(%[0-9a-fA-F]{2})+/g, (run) => {
    try {
      return decodeURIComponent(run);
    } catch {
      // Invalid UTF-8: decode byte by byte like Python's errors="replace".
      const bytes = Buffer.from(
        run
          .split("%")
          .slice(1)
          .map((h) => parseInt(h, 16)),
      );
      return bytes.toString("utf8");
    }
  });
}
