/**
 * s3rver 3.7.1 in-process on 127.0.0.1 (a random port), a real S3-protocol server. Two fixes for
 * Node 20, written for this project:
 * - s3rver encrypts ListObjectsV2 continuation tokens with single DES, which OpenSSL 3 only has in
 *   its legacy provider. 3DES with K1=K2=K3 is single DES, byte for byte, and is in the default
 *   provider, so 'des' is mapped to it (only when 'des' is unavailable).
 * - the access key "test:tester" / "testing" is registered beside S3RVER/S3RVER, so one client
 *   configuration works against s3rver and the Swift test server.
 * Known gaps (keep them out of assertions): conditional PUT ignored, SigV4 not verified, suffix
 * ranges off by one, GET If-Match ignored.
 */
import crypto from "node:crypto";
import { mkdirSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);

export const TEST_ACCESS_KEY = "test:tester";
export const TEST_SECRET_KEY = "testing";

let desPatched = false;

function patchDes(): void {
  if (desPatched) return;
  desPatched = true;
  try {
    crypto.createCipheriv("des", Buffer.alloc(8), Buffer.alloc(8));
    return; // the legacy provider is active
  } catch {
    // patch below
  }
  type CipherFactory = (algorithm: string, key: Buffer, iv: Buffer, options?: unknown) => unknown;
  const cryptoModule = require("node:crypto") as Record<string, CipherFactory>;
  for (const name of ["createCipheriv", "createDecipheriv"]) {
    const original = cryptoModule[name] as CipherFactory;
    cryptoModule[name] = function (this: unknown, algorithm, key, iv, options) {
      if (
        typeof algorithm === "string" &&
        algorithm.toLowerCase() === "des" &&
        Buffer.isBuffer(key) &&
        key.length === 8
      ) {
        return original.call(this, "des-ede3-cbc", Buffer.concat([key, key, key]), iv, options);
      }
      return original.call(this, algorithm, key, iv, options);
    };
  }
}

interface S3rverInstance {
  run(): Promise<{ address: string; port: number }>;
  close(): Promise<void>;
}

export interface S3rverServer {
  endpoint: string;
  close(): Promise<void>;
}

export async function startS3rver(directory: string): Promise<S3rverServer> {
  patchDes();
  const S3rver = require("s3rver") as new (options: Record<string, unknown>) => S3rverInstance;
  const { DUMMY_ACCOUNT } = require("s3rver/lib/models/account") as {
    DUMMY_ACCOUNT: { createKeyPair(id: string, secret: string): void };
  };
  DUMMY_ACCOUNT.createKeyPair(TEST_ACCESS_KEY, TEST_SECRET_KEY);
  mkdirSync(directory, { recursive: true });
  const server = new S3rver({ address: "127.0.0.1", port: 0, directory, silent: true });
  const { address, port } = await server.run();
  return { endpoint: `http://${address}:${port}`, close: () => server.close() };
}
