/**
 * TF.js's IOHandler types, declared structurally (tfjs-core `io/types.ts`), so the browser build
 * needs no TF.js import: the objects below are what `tf.loadGraphModel` and `tf.loadLayersModel`
 * take, whichever TF.js (script tag or bundler) the app uses.
 */

export interface WeightsManifestEntry {
  name: string;
  shape: number[];
  dtype: string;
  group?: string;
  quantization?: { dtype: string; [key: string]: unknown };
  [key: string]: unknown;
}

export interface ModelArtifacts {
  modelTopology?: object | ArrayBuffer;
  weightSpecs?: WeightsManifestEntry[];
  /** One ArrayBuffer per weight file, in manifest order (as TF.js's http loader gives them). */
  weightData?: ArrayBuffer | ArrayBuffer[];
  format?: string;
  generatedBy?: string;
  convertedBy?: string | null;
  trainingConfig?: object;
  signature?: object;
  userDefinedMetadata?: Record<string, object>;
  modelInitializer?: object;
  initializerSignature?: object;
}

/** Where the last `load()` got the model from, and what it cost. */
export interface LoadReport {
  from: "network" | "storage";
  /** Bytes of the model (model.json and weight files). */
  bytes: number;
  /** Bytes read from the network by this load (0 from storage). */
  fetchedBytes: number;
  ms: number;
  /** Whether the model is now kept in browser storage. */
  stored: boolean;
}

export interface HubcacheIOHandler {
  load(): Promise<ModelArtifacts>;
  /** The canonical handle the model is stored under. */
  readonly handle: string;
  /** Set by each `load()`. */
  readonly lastLoad: LoadReport | undefined;
}
