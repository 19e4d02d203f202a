/**
 * Downloading a model file by file (model.json, then its weight files a few at a time), and the one
 * check both a download and a stored copy pass: model.json parses, every weight file it lists is
 * there, and each weight group holds exactly the bytes its manifest describes.
 */
import { ErrorCode, HubcacheError } from "../errors.js";
import { type TfjsModelJson, expectedGroupBytes, parseModelJson, weightFiles } from "../load/model-json.js";
import { redactUrl } from "../redact.js";
import type { BrowserEventListener } from "./events.js";
import { type FetchLike, type FetchedFile, digestBase64, fetchFile } from "./net.js";
import type { FileBytes } from "./store.js";

export const MODEL_FILE = "model.json";

export interface DownloadOptions {
  url: (file: string) => string;
  headers: Record<string, string>;
  fetch: FetchLike;
  signal: AbortSignal | undefined;
  concurrency: number;
  verifyFile:
    | ((file: { path: string; bytes: Uint8Array; etag: string | undefined }) => void | Promise<void>)
    | undefined;
  emit: BrowserEventListener;
  onProgress: ((fraction: number) => void) | undefined;
}

export interface DownloadedModel {
  json: TfjsModelJson;
  weights: ArrayBuffer[];
  /** model.json and the weight files together. */
  bytes: number;
  /** Every file with its sha-256 (computed here unless the server vouched for it), for storing. */
  filesWithDigests(): Promise<FileBytes[]>;
}

/** An exact-size ArrayBuffer holding `bytes` (no copy when it already is one). */
function ownBuffer(bytes: Uint8Array): ArrayBuffer {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength
    ? (bytes.buffer as ArrayBuffer)
    : bytes.slice().buffer;
}

function parseJson(handle: string, bytes: Uint8Array, location: string): TfjsModelJson {
  // A string, so model-json.ts needs no Buffer (it is shared with the Node build).
  return parseModelJson(new TextDecoder().decode(bytes), { handle, location });
}

/** model.json parsed, and the weight files (in manifest order) checked against its manifest. */
export function checkedModel(
  handle: string,
  modelFile: string,
  files: Map<string, Uint8Array>,
): { json: TfjsModelJson; weights: ArrayBuffer[] } {
  const jsonBytes = files.get(modelFile);
  if (jsonBytes === undefined) {
    throw new HubcacheError(ErrorCode.INVALID_MODEL, `${handle} has no ${modelFile}.`, { handle });
  }
  const json = parseJson(handle, jsonBytes, handle);
  const weights: ArrayBuffer[] = [];
  for (const group of json.weightsManifest ?? []) {
    let total = 0;
    for (const path of group.paths) {
      const data = files.get(path);
      if (data === undefined) {
        throw new HubcacheError(
          ErrorCode.INVALID_MODEL,
          `model.json of ${handle} lists ${path}, which is missing.`,
          {
            handle,
          },
        );
      }
      total += data.byteLength;
      weights.push(ownBuffer(data));
    }
    const expected = expectedGroupBytes(group);
    if (expected !== undefined && expected !== total) {
      throw new HubcacheError(
        ErrorCode.INVALID_MODEL,
        `The weight files ${group.paths.join(", ")} of ${handle} hold ${total} bytes, but model.json describes ${expected}.`,
        { handle, hint: "The model is incomplete or damaged as the host sent it; nothing was stored." },
      );
    }
  }
  return { json, weights };
}

/** Run `task` on every item, at most `limit` at once; the first failure rejects (the rest still settle). */
async function eachLimited<T>(items: T[], limit: number, task: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await task(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
}

export async function downloadModel(handle: string, options: DownloadOptions): Promise<DownloadedModel> {
  // The first failing file stops the others (the app's signal stops them all).
  const stop = new AbortController();
  const onAbort = (): void => stop.abort(options.signal?.reason);
  if (options.signal?.aborted) onAbort();
  options.signal?.addEventListener("abort", onAbort, { once: true });
  try {
    return await download(handle, { ...options, signal: stop.signal }, () => stop.abort());
  } finally {
    options.signal?.removeEventListener("abort", onAbort);
  }
}

/** Progress over all of a model's files: bytes per file, files done, the total once known. */
class Progress {
  private readonly loadedBy = new Map<string, number>();
  total: number | undefined;
  files = 0;

  constructor(
    private readonly handle: string,
    private readonly options: DownloadOptions,
  ) {}

  loaded(path: string, bytes: number): void {
    this.loadedBy.set(path, bytes);
  }

  report(done: boolean): void {
    const loadedBytes = [...this.loadedBy.values()].reduce((a, b) => a + b, 0);
    const { handle, total: totalBytes, files } = this;
    this.options.emit({ type: "progress", handle, loadedBytes, totalBytes, files, done });
    if (totalBytes) this.options.onProgress?.(Math.min(1, loadedBytes / totalBytes));
  }
}

async function download(
  handle: string,
  options: DownloadOptions,
  stopOthers: () => void,
): Promise<DownloadedModel> {
  const fetched = new Map<string, FetchedFile>();
  const progress = new Progress(handle, options);
  const get = async (path: string): Promise<void> => {
    const file = await fetchFile({
      ...options,
      url: options.url(path),
      handle,
      file: path,
      onBytes: (loaded) => {
        progress.loaded(path, loaded);
        progress.report(false);
      },
    });
    await options.verifyFile?.({ path, bytes: file.bytes, etag: file.etag });
    fetched.set(path, file);
    progress.loaded(path, file.bytes.byteLength);
    progress.files++;
  };

  options.emit({ type: "download-start", handle, url: redactUrl(options.url(MODEL_FILE)) });
  await get(MODEL_FILE);
  const modelJson = fetched.get(MODEL_FILE)!.bytes;
  const json = parseJson(handle, modelJson, redactUrl(options.url(MODEL_FILE)));
  const paths = [...new Set(weightFiles(json))];
  const expected = (json.weightsManifest ?? []).map(expectedGroupBytes);
  if (expected.every((n) => n !== undefined)) {
    progress.total = modelJson.byteLength + expected.reduce((a: number, b) => a + (b ?? 0), 0);
  }
  await eachLimited(paths, options.concurrency, get).catch((error: unknown) => {
    stopOthers();
    throw error;
  });
  const { weights } = checkedModel(handle, MODEL_FILE, new Map([...fetched].map(([p, f]) => [p, f.bytes])));
  const bytes = [...fetched.values()].reduce((sum, f) => sum + f.bytes.byteLength, 0);
  progress.total ??= bytes;
  progress.report(true);
  const withDigest = async (path: string): Promise<FileBytes> => {
    const file = fetched.get(path)!;
    const sha256 = file.sha256 ?? (await digestBase64("sha-256", file.bytes));
    return { path, data: file.bytes, bytes: file.bytes.byteLength, sha256, etag: file.etag };
  };
  return {
    json,
    weights,
    bytes,
    filesWithDigests: () => Promise.all([MODEL_FILE, ...paths].map(withDigest)),
  };
}
