/** ModelArtifacts from a model.json and its weight buffers, field for field as TF.js's http loader builds them. */
import type { TfjsModelJson } from "../load/model-json.js";
import type { ModelArtifacts, WeightsManifestEntry } from "./types.js";

export function artifactsOf(json: TfjsModelJson, weights: ArrayBuffer[]): ModelArtifacts {
  // tfjs-core io_utils getModelArtifactsForJSONSync: these four are always set, the rest when present.
  const artifacts: ModelArtifacts = {
    modelTopology: json.modelTopology as ModelArtifacts["modelTopology"],
    format: json.format,
    generatedBy: json.generatedBy,
    convertedBy: json.convertedBy,
  };
  if (json.trainingConfig != null) artifacts.trainingConfig = json.trainingConfig as object;
  if (json.weightsManifest != null) {
    artifacts.weightSpecs = json.weightsManifest.flatMap((group) => group.weights) as WeightsManifestEntry[];
    artifacts.weightData = weights;
  }
  if (json.signature != null) artifacts.signature = json.signature as object;
  if (json.userDefinedMetadata != null) {
    artifacts.userDefinedMetadata = json.userDefinedMetadata as Record<string, object>;
  }
  if (json.modelInitializer != null) artifacts.modelInitializer = json.modelInitializer as object;
  if (json.initializerSignature != null) artifacts.initializerSignature = json.initializerSignature as object;
  return artifacts;
}
