/**
 * hubcache's TF.js IOHandler: reads model.json and the weight files from a ModelSource (a cached
 * folder, a host read file by file, an object store). Pure JavaScript: no tfjs-node, no file://
 * router. Unlike TF.js's own loaders it checks that every weight file exists and that the bytes add
 * up to what the manifest describes, so a broken model fails with a clear error instead of a shape
 * mismatch deep inside TF.js.
 */
import type { io } from "@tensorflow/tfjs-core";
import { ErrorCode, HubcacheError } from "../errors.js";
import { redactUrl } from "../redact.js";
import { folderError } from "./diagnose.js";
import { findModelFolder } from "./locate.js";
import {
  type TfjsModelJson,
  type WeightGroup,
  expectedGroupBytes,
  parseModelJson,
  weightSpecs,
} from "./model-json.js";
import { type ModelSource, dirSource } from "./source.js";

export interface ModelReadOptions {
  /**
   * Hand the weights to TF.js as one stream, file by file, instead of reading every file into
   * memory first (TF.js's `streamWeights`), so the raw weight bytes and the decoded tensors are
   * never all in memory together. Graph models only: tfjs-layers 4.22 cannot take a weight stream.
   */
  streamWeights?: boolean;
  /** Called with the fraction (0 to 1) of weight files read, like TF.js's `onProgress`. */
  onProgress?: (fraction: number) => void;
  signal?: AbortSignal;
}

export interface SourceHandlerOptions extends ModelReadOptions {
  /** The model.json's path in the source. Default: "model.json". */
  modelFile?: string;
  /** An already parsed model.json (saves reading it twice). */
  modelJson?: TfjsModelJson;
  handle?: string;
  /** The cache entry, named in errors so the user knows what to delete. */
  cacheEntry?: string;
}

/** An IOHandler that reads a model from any ModelSource. */
export function sourceIOHandler(source: ModelSource, options: SourceHandlerOptions = {}): io.IOHandler {
  return {
    load: async () => {
      const where = redactUrl(source.location);
      const json =
        options.modelJson ??
        parseModelJson(await source.read(options.modelFile ?? "model.json", options.signal), {
          handle: options.handle,
          location: where,
        });
      return modelArtifacts(source, json, options);
    },
  };
}

/**
 * An IOHandler for a model folder on disk: a hubcache/TF Hub cache entry (one wrapping folder in
 * the archive is tolerated) or any folder holding model.json. Use it with TF.js's own loaders:
 * `loadGraphModel(cacheIOHandler(await resolve(handle)))`.
 */
export function cacheIOHandler(
  dir: string,
  options: ModelReadOptions & { handle?: string } = {},
): io.IOHandler {
  return {
    load: async () => {
      const found = await findModelFolder(dir);
      const problem = folderError(found.folder, { handle: options.handle, dir: found.dir });
      if (problem) throw problem;
      return sourceIOHandler(dirSource(found.dir, { handle: options.handle }), {
        ...options,
        modelFile: found.modelFile,
      }).load!();
    },
  };
}

async function modelArtifacts(
  source: ModelSource,
  json: TfjsModelJson,
  options: SourceHandlerOptions,
): Promise<io.ModelArtifacts> {
  const artifacts: io.ModelArtifacts = {
    modelTopology: json.modelTopology as NonNullable<io.ModelArtifacts["modelTopology"]>,
  };
  if (json.format !== undefined) artifacts.format = json.format;
  if (json.generatedBy !== undefined) artifacts.generatedBy = json.generatedBy;
  if (json.convertedBy !== undefined) artifacts.convertedBy = json.convertedBy;
  if (json.trainingConfig != null) artifacts.trainingConfig = json.trainingConfig as io.TrainingConfig;
  if (json.signature != null) artifacts.signature = json.signature;
  if (json.userDefinedMetadata != null) {
    artifacts.userDefinedMetadata = json.userDefinedMetadata as Record<string, object>;
  }
  if (json.modelInitializer != null) artifacts.modelInitializer = json.modelInitializer;
  if (json.initializerSignature != null) artifacts.initializerSignature = json.initializerSignature;
  const groups = json.weightsManifest;
  if (groups == null) return artifacts;

  const reader = new WeightReader(source, groups, options);
  await reader.checkLocalSizes();
  artifacts.weightSpecs = weightSpecs(json) as io.WeightsManifestEntry[];
  if (options.streamWeights) {
    artifacts.getWeightStream = () => reader.stream();
  } else {
    artifacts.weightData = await reader.readAll();
  }
  return artifacts;
}

/** An exact-size ArrayBuffer of a chunk (no copy when the chunk already is one). */
function ownBuffer(bytes: Uint8Array): ArrayBuffer {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength
    ? (bytes.buffer as ArrayBuffer)
    : (bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer);
}

/** Reads and checks a manifest's weight files (shared by the IOHandler and hubFetch). */
export class WeightReader {
  private readonly files: string[];
  private readonly where: string;

  constructor(
    private readonly source: ModelSource,
    private readonly groups: WeightGroup[],
    private readonly options: SourceHandlerOptions,
  ) {
    this.files = groups.flatMap((g) => g.paths);
    this.where = redactUrl(source.location);
  }

  private get redownloadHint(): string {
    return this.options.cacheEntry
      ? `The model is incomplete or damaged as the host sent it. Delete ${this.options.cacheEntry} to download it again; if it persists, report it to the model's publisher.`
      : "The model is incomplete or damaged. Get a complete copy, or report it to the model's publisher.";
  }

  private missing(file: string, cause: unknown): HubcacheError {
    return new HubcacheError(
      ErrorCode.INVALID_MODEL,
      `model.json lists the weight file ${file}, but ${this.where} has no such file.`,
      { handle: this.options.handle, hint: this.redownloadHint, cause },
    );
  }

  private wrongSize(index: number, got: number, expected: number): HubcacheError {
    const group = this.groups[index];
    return new HubcacheError(
      ErrorCode.INVALID_MODEL,
      `The weight files ${group?.paths.join(", ")} in ${this.where} hold ${got} bytes, but model.json describes ${expected}.`,
      { handle: this.options.handle, hint: this.redownloadHint },
    );
  }

  private async readFile(file: string): Promise<Uint8Array> {
    try {
      return await this.source.read(file, this.options.signal);
    } catch (error) {
      if (error instanceof HubcacheError && error.code === ErrorCode.NOT_FOUND) {
        throw this.missing(file, error);
      }
      throw error;
    }
  }

  /** Local files: check existence and sizes before reading a byte. */
  async checkLocalSizes(): Promise<void> {
    for (const index of this.groups.keys()) await this.checkLocalGroup(index);
  }

  /** Local files: does the group's files exist, and do their sizes add up to the manifest's? */
  async checkLocalGroup(index: number): Promise<void> {
    const group = this.groups[index];
    if (!this.source.local || group === undefined) return;
    let total = 0;
    for (const file of group.paths) {
      try {
        total += (await this.source.size(file)) ?? 0;
      } catch (error) {
        if (error instanceof HubcacheError && error.code === ErrorCode.NOT_FOUND) {
          throw this.missing(file, error);
        }
        throw error;
      }
    }
    this.checkGroup(index, total);
  }

  /** One weight file as a stream (a missing file is a clear error). */
  async openFile(file: string): Promise<ReadableStream<Uint8Array>> {
    try {
      return await this.source.stream(file, this.options.signal);
    } catch (error) {
      if (error instanceof HubcacheError && error.code === ErrorCode.NOT_FOUND) {
        throw this.missing(file, error);
      }
      throw error;
    }
  }

  private checkGroup(index: number, bytes: number): void {
    const group = this.groups[index];
    const expected = group === undefined ? undefined : expectedGroupBytes(group);
    if (expected !== undefined && bytes !== expected) throw this.wrongSize(index, bytes, expected);
  }

  /** Every weight file, read in parallel, one ArrayBuffer each (TF.js joins them without a copy). */
  async readAll(): Promise<ArrayBuffer | ArrayBuffer[]> {
    const { onProgress } = this.options;
    let done = 0;
    onProgress?.(0);
    const buffers = await Promise.all(
      this.files.map(async (file) => {
        const buffer = ownBuffer(await this.readFile(file));
        done++;
        onProgress?.(done / this.files.length);
        return buffer;
      }),
    );
    let offset = 0;
    for (const [index, group] of this.groups.entries()) {
      const parts = buffers.slice(offset, offset + group.paths.length);
      offset += group.paths.length;
      this.checkGroup(
        index,
        parts.reduce((sum, b) => sum + b.byteLength, 0),
      );
    }
    return buffers.length === 1 && buffers[0] !== undefined ? buffers[0] : buffers;
  }

  /** The weight files, in manifest order, as one stream; each group's byte count is checked. */
  stream(): ReadableStream<ArrayBuffer> {
    const { onProgress } = this.options;
    let groupIndex = 0;
    let pathIndex = 0;
    let groupBytes = 0;
    let filesDone = 0;
    let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
    onProgress?.(0);
    return new ReadableStream<ArrayBuffer>({
      pull: async (controller) => {
        for (;;) {
          const group = this.groups[groupIndex];
          if (group === undefined) {
            controller.close();
            return;
          }
          const file = group.paths[pathIndex];
          if (file === undefined) {
            this.checkGroup(groupIndex, groupBytes);
            groupIndex++;
            pathIndex = 0;
            groupBytes = 0;
            continue;
          }
          reader ??= (await this.openFile(file)).getReader();
          const { done, value } = await reader.read();
          if (done) {
            reader = undefined;
            pathIndex++;
            filesDone++;
            onProgress?.(filesDone / this.files.length);
            continue;
          }
          if (value.byteLength === 0) continue;
          groupBytes += value.byteLength;
          controller.enqueue(ownBuffer(value));
          return;
        }
      },
      cancel: async (reason) => {
        await reader?.cancel(reason);
      },
    });
  }
}
