/**
 * A local hub hosting the real TF.js models (and broken and SavedModel-shaped variants) in the
 * layouts the load tests need: archives for compressed mode, folders for file-by-file reads.
 */
import { promises as fs } from "node:fs";
import path from "node:path";
import { type HubServer, startHubServer } from "./hub-server.js";
import { movenetModelDir, savedModelDir, tarGz, tempDir, upscalerModelDir } from "./fixtures.js";

export const PATHS = {
  /** tfhub.dev's TF.js handle shape. */
  movenet: "/google/tfjs-model/movenet/singlepose/lightning/4",
  /** Kaggle's TF.js handle shape. */
  upscaler: "/models/upscalerjs/default-model/tfJs/default/1",
  /** A TF (SavedModel) handle. */
  savedModel: "/google/imagenet/mobilenet_v2/classification/5",
  /** Not recognisable as TF.js from the URL; the host has a SavedModel and a TF.js archive. */
  bothFormats: "/acme/pose/1",
  /** A TF.js archive whose files sit under one top-level folder. */
  wrapped: "/acme/tfjs-model/wrapped/1",
  /** model.json without `format` (old converters). */
  noFormatGraph: "/acme/tfjs-model/old-graph/1",
  noFormatLayers: "/acme/tfjs-model/old-layers/1",
  /** Broken models. */
  missingShard: "/acme/tfjs-model/missing-shard/1",
  shortShard: "/acme/tfjs-model/short-shard/1",
  escape: "/acme/tfjs-model/escape/1",
  /** A non-TF.js handle whose UNCOMPRESSED location is an http folder. */
  located: "/acme/located/1",
} as const;

export interface LoadHub {
  hub: HubServer;
  movenetDir: string;
  upscalerDir: string;
  savedModelDir: string;
  handle(key: keyof typeof PATHS): string;
}

async function editJson(dir: string, edit: (json: Record<string, unknown>) => void): Promise<void> {
  const file = path.join(dir, "model.json");
  const json = JSON.parse(await fs.readFile(file, "utf8")) as Record<string, unknown>;
  edit(json);
  await fs.writeFile(file, JSON.stringify(json));
}

export async function startLoadHub(): Promise<LoadHub> {
  const hub = await startHubServer();
  const movenet = await movenetModelDir();
  const upscaler = await upscalerModelDir();
  const saved = await savedModelDir(16 * 1024);
  const movenetTar = await tarGz(movenet);
  hub.add(PATHS.movenet, { archive: movenetTar, dir: movenet });
  hub.add(PATHS.upscaler, { archive: await tarGz(upscaler), dir: upscaler });
  hub.add(PATHS.savedModel, { archive: await tarGz(saved) });
  hub.add(PATHS.bothFormats, { archive: await tarGz(saved), tfjsArchive: movenetTar });

  const wrapped = await tempDir("wrapped-");
  await fs.mkdir(path.join(wrapped, "movenet-lightning"));
  await movenetModelDir(path.join(wrapped, "movenet-lightning"));
  await fs.writeFile(path.join(wrapped, ".DS_Store"), "mac noise");
  hub.add(PATHS.wrapped, { archive: await tarGz(wrapped) });

  const oldGraph = await movenetModelDir();
  await editJson(oldGraph, (json) => delete json.format);
  hub.add(PATHS.noFormatGraph, { archive: await tarGz(oldGraph) });
  const oldLayers = await upscalerModelDir();
  await editJson(oldLayers, (json) => delete json.format);
  hub.add(PATHS.noFormatLayers, { archive: await tarGz(oldLayers) });

  const missing = await movenetModelDir();
  await fs.rm(path.join(missing, "group1-shard1of1.bin"));
  hub.add(PATHS.missingShard, { archive: await tarGz(missing), dir: missing });
  const short = await upscalerModelDir();
  await fs.truncate(path.join(short, "group1-shard1of1.bin"), 888_300 - 1000);
  hub.add(PATHS.shortShard, { archive: await tarGz(short), dir: short });
  const escape = await upscalerModelDir();
  await editJson(escape, (json) => {
    (json.weightsManifest as { paths: string[] }[])[0]!.paths = ["../../../../etc/hostname"];
  });
  hub.add(PATHS.escape, { archive: await tarGz(escape), dir: escape });

  hub.add(PATHS.located, {
    archive: movenetTar,
    dir: movenet,
    uncompressedLocation: `${hub.origin}/static${PATHS.located}/`,
  });

  return {
    hub,
    movenetDir: movenet,
    upscalerDir: upscaler,
    savedModelDir: saved,
    handle: (key) => hub.handle(PATHS[key]),
  };
}
