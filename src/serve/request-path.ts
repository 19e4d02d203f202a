/**
 * What a request to the mirror asks for, from its raw URL alone (no I/O). The scheme:
 *   /                                          the page listing the cached models (JSON on request)
 *   /<host>/<path>?tf-hub-format=compressed    the model `https://<host>/<path>` as a tar archive
 *   /<host>/<path>?tfjs-format=compressed      the same, for a TF.js handle
 *   /<host>/<path>?tf-hub-format=uncompressed  303 to /_files/<sha1(handle)>, where each file is
 *   /<host>/<path>/<file>?tfjs-format=file     one file, as TF.js's `fromTFHub` reads models
 *   /_files/<hash>/<file path>                 one file of the entry whose handle hashes to <hash>
 * Every path segment is checked before anything else happens: no `.` or `..` (however encoded),
 * no encoded `/` or `\`, no backslash, no NUL, no empty segment inside the path.
 */
import type { ModelFormat } from "../handle.js";

export type ArchiveForm = "compressed" | "uncompressed";

export type MirrorRequest =
  | { kind: "index" }
  | {
      kind: "archive" | "uncompressed";
      host: string;
      handle: string;
      /** "tfjs" for `tfjs-format=...`; else "auto" (TF.js handles are still recognised from the URL). */
      modelFormat: ModelFormat;
      /** `hubcache-archive=tar|tar.gz`: the body form asked for explicitly. */
      bodyForm: "tar" | "tar.gz" | undefined;
    }
  | { kind: "file"; host: string; handle: string; file: string }
  | { kind: "entry-file"; hash: string; file: string }
  | { kind: "invalid"; status: 400 | 404; message: string };

const FORMAT_PARAMS = new Set(["tf-hub-format", "tfjs-format", "hubcache-archive"]);

function invalid(message: string, status: 400 | 404 = 400): MirrorRequest {
  return { kind: "invalid", status, message };
}

/** Decoded path segments, or an error message when one is unsafe. */
export function safeSegments(rawPath: string): string[] | string {
  if (rawPath.includes("\\")) return "backslashes are not allowed in paths";
  const raw = rawPath.split("/").slice(1);
  // One trailing slash is part of a handle (TF Hub keys it separately): keep it as "".
  const segments: string[] = [];
  for (let i = 0; i < raw.length; i++) {
    const piece = raw[i] ?? "";
    let decoded: string;
    try {
      decoded = decodeURIComponent(piece);
    } catch {
      return "the path has a malformed %-escape";
    }
    if (decoded === "" && i !== raw.length - 1) return "the path has an empty segment (//)";
    if (decoded === "." || decoded === "..") return "the path has a . or .. segment";
    if (/[/\\\0]/.test(decoded)) return "the path has an encoded slash, backslash or NUL";
    segments.push(decoded);
  }
  return segments;
}

/** A host name as it may appear in a handle: letters, digits, dots, dashes, and an optional port. */
const HOST = /^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d{1,5})?$/;

/** The query without the mirror's own parameters, as it was written (so the handle keeps its bytes). */
function handleQuery(search: string): string {
  if (search === "" || search === "?") return "";
  const kept = search
    .slice(1)
    .split("&")
    .filter((pair) => pair !== "" && !FORMAT_PARAMS.has(decodeURIComponentSafe(pair.split("=")[0] ?? "")));
  return kept.length === 0 ? "" : `?${kept.join("&")}`;
}

function decodeURIComponentSafe(text: string): string {
  try {
    return decodeURIComponent(text.replace(/\+/g, " "));
  } catch {
    return text;
  }
}

export function parseMirrorRequest(rawUrl: string): MirrorRequest {
  if (rawUrl.includes("\0")) return invalid("NUL is not allowed in a URL");
  const queryIndex = rawUrl.indexOf("?");
  const rawPath = queryIndex === -1 ? rawUrl : rawUrl.slice(0, queryIndex);
  const search = queryIndex === -1 ? "" : rawUrl.slice(queryIndex);
  if (!rawPath.startsWith("/")) return invalid("the request target must be a path");
  if (rawPath === "/") return { kind: "index" };
  const segments = safeSegments(rawPath);
  if (typeof segments === "string") return invalid(segments);
  const params = new URLSearchParams(search);
  const [first, ...rest] = segments;
  if (first === "_files") {
    const [hash, ...file] = rest;
    if (!hash || !/^[0-9a-f]{40}$/.test(hash)) return invalid("no such entry", 404);
    return { kind: "entry-file", hash, file: file.filter((s) => s !== "").join("/") };
  }
  const host = (first ?? "").toLowerCase();
  if (!HOST.test(host)) return invalid(`"${first ?? ""}" is not a host name`);
  if (rest.length === 0 || rest.every((s) => s === "")) return invalid("the path names no model", 404);
  const encodedRest = rawPath.slice(1 + (rawPath.slice(1).indexOf("/") + 1));
  const tfjs = params.getAll("tfjs-format");
  const tfhub = params.getAll("tf-hub-format");
  if (tfjs.includes("file")) {
    const file = rest[rest.length - 1] ?? "";
    if (file === "" || rest.length < 2) return invalid("a file read names the file after the handle");
    const handlePath = encodedRest.slice(0, encodedRest.lastIndexOf("/"));
    return { kind: "file", host, handle: `https://${host}/${handlePath}`, file };
  }
  const forms = [...tfjs, ...tfhub];
  const kind = forms.includes("compressed")
    ? "archive"
    : forms.includes("uncompressed")
      ? "uncompressed"
      : undefined;
  if (kind === undefined) {
    return invalid(
      "say which form: ?tf-hub-format=compressed (a tar), ?tf-hub-format=uncompressed (303 to its files), <handle>/<file>?tfjs-format=file",
    );
  }
  const body = params.get("hubcache-archive");
  return {
    kind,
    host,
    handle: `https://${host}/${encodedRest}${handleQuery(search)}`,
    modelFormat: tfjs.length > 0 && tfhub.length === 0 ? "tfjs" : "auto",
    bodyForm: body === "tar" || body === "tar.gz" ? body : undefined,
  };
}

/** Versioned handles never change: `.../<version>` (tfhub.dev, Kaggle) or `.../versions/<n>`. */
export function isVersionedHandle(handle: string): boolean {
  const pathname = handle.replace(/[?#].*$/, "").replace(/\/+$/, "");
  return /\/\d+$/.test(pathname);
}
