/**
 * A local hub serving one model archive under a new path per test, so each test counts its own
 * downloads in a fresh cache dir. Shared by the concurrency, crash and Python-compatibility suites.
 */
import { tarGz, tempDir } from "./fixtures.js";
import { type HubServer, startHubServer } from "./hub-server.js";

export interface FreshModel {
  handle: string;
  cacheDir: string;
  /** Archive downloads of this model's path at the host so far. */
  downloads: () => number;
}

export interface ModelHost {
  server: HubServer;
  modelDir: string;
  archive: Buffer;
  fresh(): Promise<FreshModel>;
}

export async function startModelHost(name: string, modelDir: string): Promise<ModelHost> {
  const server = await startHubServer();
  const archive = await tarGz(modelDir);
  let counter = 0;
  return {
    server,
    modelDir,
    archive,
    async fresh() {
      const modelPath = `/google/${name}-${++counter}/1`;
      server.add(modelPath, { archive });
      const storagePath = `/storage${modelPath}.tar.gz`;
      return {
        handle: server.handle(modelPath),
        cacheDir: await tempDir(`hubcache-${name}-`),
        downloads: () => server.downloads().filter((r) => r.path === storagePath).length,
      };
    },
  };
}
