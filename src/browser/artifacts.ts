/** ModelArtifacts from a model.json and its weight buffers, field for field as TF.js's http loader builds them. */
import type { TfjsModelJson } from "../load/model-json.js";
import type { ModelArtifacts } from "./types.js";

export function artifactsOf(json: TfjsModelJson, weights: ArrayBuffer[]): ModelArtifacts {
  // tfjs-core io_utils getModelArtifactsForJSONSync: these four keys are always there (undefined
  // when model.json lacks them, which TF.js's optional types do not spell), the rest when present.
  const artifacts = {
    modelTopology: json.modelTopology,
    format: json.format,
    generatedBy: json.generatedBy,
    convertedBy: json.convertedBy,
  } as ModelArtifacts;
  if (json.trainingConfig != null) artifacts.trainingConfig = json.trainingConfig;
  if (json.weightsManifest != null) {
    artifacts.weightSpecs = json.weightsManifest.flatMap((group) => group.weights);
    artifacts.weightData = weights;
  }
  if (json.signature != null) artifacts.signature = json.signature;
  if (json.userDefinedMetadata != null) {
    artifacts.userDefinedMetadata = json.userDefinedMetadata as Record<string, object>;
  }
  if (json.modelInitializer != null) artifacts.modelInitializer = json.modelInitializer;
  if (json.initializerSignature != null) artifacts.initializerSignature = json.initializerSignature;
  return artifacts;
}
