/**
 * `hubFetch()`: a `fetch` for TF.js's `fetchFunc` option, so code that already calls
 * `loadGraphModel(handle, { fromTFHub: true })` gets the cache without changing anything else.
 * TF.js asks for `<handle>/model.json?tfjs-format=file` and then each weight file with the same
 * query; hubFetch answers those from the cache (the handle is downloaded once, as a TF.js archive)
 * and passes every other request to the real fetch.
 */
import { ErrorCode, HubcacheError } from "../errors.js";
import type { FetchFunction } from "../net/http-errors.js";
import { locatedModelError } from "./diagnose.js";
import { WeightReader } from "./io-handler.js";
import { type LocateOptions, type LocatedModel, locateModel } from "./locate.js";
import { type TfjsModelJson, parseModelJson } from "./model-json.js";
import { redactUrl } from "../redact.js";

export interface HubFetchOptions extends LocateOptions {
  /** Answers every request that is not a TF Hub file read. Default: `fetch` option, else global fetch. */
  fallback?: FetchFunction;
}

/** The handle and file of a TF Hub file read (`.../model.json?tfjs-format=file`), if it is one. */
export function tfhubFileRequest(href: string): { handle: string; file: string } | undefined {
  let url: URL;
  try {
    url = new URL(href);
  } catch {
    return undefined;
  }
  if (!/^https?:$/.test(url.protocol) || url.searchParams.get("tfjs-format") !== "file") return undefined;
  const cut = url.pathname.lastIndexOf("/");
  const file = url.pathname.slice(cut + 1);
  if (cut <= 0 || file === "") return undefined;
  let decoded: string;
  try {
    decoded = decodeURIComponent(file);
  } catch {
    return undefined;
  }
  return { handle: `${url.origin}${url.pathname.slice(0, cut)}`, file: decoded };
}

interface CachedModel {
  located: LocatedModel;
  json: Promise<TfjsModelJson>;
}

/**
 * A fetch function for TF.js's `fetchFunc`. Options are resolve's (cacheDir, offline, loadFormat,
 * onEvent, ...); handles are treated as TF.js handles. Weight files are checked before TF.js sees
 * them: a missing file or a wrong byte count throws a coded error (TF.js itself does not check).
 */
export function hubFetch(options: HubFetchOptions = {}): FetchFunction {
  const fallback: FetchFunction =
    options.fallback ?? options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  const models = new Map<string, Promise<CachedModel>>();

  const open = (handle: string): Promise<CachedModel> => {
    let entry = models.get(handle);
    if (!entry) {
      entry = (async () => {
        const located = await locateModel(handle, { ...options, modelFormat: "tfjs" });
        const problem = locatedModelError(located);
        if (problem) throw problem;
        const json = (async () =>
          parseModelJson(await located.source.read(located.modelFile, options.signal), {
            handle,
            location: redactUrl(located.source.location),
          }))();
        json.catch(() => undefined);
        return { located, json };
      })();
      models.set(handle, entry);
      entry.catch(() => models.delete(handle));
    }
    return entry;
  };

  const serve = async (handle: string, file: string): Promise<Response> => {
    const { located, json } = await open(handle);
    const { source } = located;
    if (file === located.modelFile) {
      // Parse it first: it validates every weight path before TF.js builds a URL from one.
      await json;
      const bytes = await source.read(file, options.signal);
      return new Response(new Uint8Array(bytes.buffer as ArrayBuffer, bytes.byteOffset, bytes.byteLength), {
        status: 200,
        headers: { "content-type": "application/json" },
      });
    }
    const manifest = (await json).weightsManifest ?? [];
    const index = manifest.findIndex((group) => group.paths.includes(file));
    if (index === -1) {
      throw new HubcacheError(
        ErrorCode.INVALID_MODEL,
        `TF.js asked for ${file}, which the model.json of ${handle} does not list.`,
        { handle, hint: "Only the files in model.json's weightsManifest are served from the cache." },
      );
    }
    const reader = new WeightReader(source, manifest, {
      handle,
      ...(located.cacheEntry === undefined ? {} : { cacheEntry: located.cacheEntry }),
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    });
    await reader.checkLocalGroup(index);
    const size = await source.size(file);
    return new Response(await reader.openFile(file), {
      status: 200,
      headers: {
        "content-type": "application/octet-stream",
        ...(size === undefined ? {} : { "content-length": String(size) }),
      },
    });
  };

  return async (input, init) => {
    const href = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
    const target = tfhubFileRequest(href);
    if (!target) return fallback(input, init);
    return serve(target.handle, target.file);
  };
}
