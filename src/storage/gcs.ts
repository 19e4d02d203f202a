/**
 * gs://bucket/prefix through the official @google-cloud/storage SDK (loaded on first use), with
 * Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS, gcloud's ADC file, the
 * metadata server on Google Cloud). Without any credentials the SDK sends the request unsigned,
 * which reads public buckets. hubcache always gives a project id (GOOGLE_CLOUD_PROJECT, else a
 * placeholder) because reading and writing objects never needs one, and without it the SDK would
 * go looking for one, metadata server included. STORAGE_EMULATOR_HOST (or the apiEndpoint
 * option) points it at an emulator; the SDK then sends no credentials.
 */
import { PassThrough } from "node:stream";
import { buffer } from "node:stream/consumers";
import { pipeline } from "node:stream/promises";
import type * as Gcs from "@google-cloud/storage";
import type { Env } from "../config.js";
import { HubcacheError } from "../errors.js";
import {
  accessDenied,
  badCredentials,
  bucketNotFound,
  networkCode,
  noCredentials,
  objectNotFound,
  storageFailure,
  storageUnreachable,
} from "./errors.js";
import { checkKey, rootPrefix } from "./location.js";
import { loadSdk } from "./sdk.js";
import type { ByteRange, ObjectBody, Storage, StoredObject, WriteBody, WriteOptions } from "./types.js";

type GcsModule = typeof Gcs;

export interface GcsOptions {
  /** API endpoint (an emulator, a private endpoint). Default: STORAGE_EMULATOR_HOST, else Google's. */
  apiEndpoint?: string | undefined;
  /** Default: GOOGLE_CLOUD_PROJECT / GCLOUD_PROJECT, else a placeholder (objects need no project). */
  projectId?: string | undefined;
  /** A service-account key file. Default: Application Default Credentials. */
  keyFilename?: string | undefined;
}

/** Streams bigger than this (or of unknown size) use a resumable upload. */
const RESUMABLE_THRESHOLD = 8 * 1024 * 1024;
export const PLACEHOLDER_PROJECT = "hubcache-no-project";

interface Client {
  storage: Gcs.Storage;
  endpoint: string;
}

const clientCache = new Map<string, Promise<Client>>();

function withScheme(endpoint: string): string {
  return /^https?:\/\//i.test(endpoint)
    ? endpoint.replace(/\/+$/, "")
    : `http://${endpoint.replace(/\/+$/, "")}`;
}

/** The SDK settings hubcache derives from options and environment (exported for tests and docs). */
export function gcsClientSettings(
  options: GcsOptions,
  env: Env,
): { settings: Gcs.StorageOptions; emulatorHost: string | undefined } {
  // STORAGE_EMULATOR_HOST is handed to the SDK as the variable itself (the SDK then talks to the
  // emulator without the /storage/v1 prefix, as emulators expect); an apiEndpoint option wins.
  const emulatorHost = options.apiEndpoint ? undefined : env.STORAGE_EMULATOR_HOST || undefined;
  return {
    settings: {
      projectId: options.projectId ?? (env.GOOGLE_CLOUD_PROJECT || env.GCLOUD_PROJECT || PLACEHOLDER_PROJECT),
      ...(options.apiEndpoint ? { apiEndpoint: withScheme(options.apiEndpoint) } : {}),
      ...(options.keyFilename === undefined ? {} : { keyFilename: options.keyFilename }),
      // Fail in seconds, not the SDK's default of up to 10 minutes of retries.
      retryOptions: { autoRetry: true, maxRetries: 2, totalTimeout: 60, maxRetryDelay: 4 },
    },
    emulatorHost,
  };
}

/** Build the SDK client with STORAGE_EMULATOR_HOST as hubcache's `env` says (the SDK reads process.env). */
function construct(
  sdk: GcsModule,
  settings: Gcs.StorageOptions,
  emulatorHost: string | undefined,
): Gcs.Storage {
  const name = "STORAGE_EMULATOR_HOST";
  const saved = process.env[name];
  if (emulatorHost === undefined) delete process.env[name];
  else process.env[name] = withScheme(emulatorHost);
  try {
    return new sdk.Storage(settings);
  } finally {
    if (saved === undefined) delete process.env[name];
    else process.env[name] = saved;
  }
}

async function clientFor(options: GcsOptions, env: Env): Promise<Client> {
  const { settings, emulatorHost } = gcsClientSettings(options, env);
  const key = JSON.stringify([settings.projectId, settings.apiEndpoint, emulatorHost, settings.keyFilename]);
  let client = clientCache.get(key);
  if (!client) {
    client = (async () => {
      const sdk = await loadSdk<GcsModule>(
        "@google-cloud/storage",
        () => import("@google-cloud/storage"),
        "gs",
      );
      return {
        storage: construct(sdk, settings, emulatorHost),
        endpoint:
          settings.apiEndpoint ?? (emulatorHost ? withScheme(emulatorHost) : "storage.googleapis.com"),
      };
    })();
    client.catch(() => clientCache.delete(key));
    clientCache.set(key, client);
  }
  return client;
}

interface GcsError {
  code?: number | string;
  status?: number;
  message?: string;
  response?: { status?: number };
}

/** GCS says "The specified bucket does not exist." for a bucket, "No such object: b/o" for an object. */
function isBucketMessage(message: string | undefined): boolean {
  return /bucket does not exist/i.test(message ?? "");
}

function statusOf(error: unknown): number | undefined {
  const e = error as GcsError | undefined;
  if (typeof e?.code === "number") return e.code;
  return e?.status ?? e?.response?.status;
}

export class GcsStorage implements Storage {
  readonly scheme = "gs";
  readonly readOnly = false;
  readonly location: string;
  private readonly root: string;
  private readonly bucketRef: Gcs.Bucket;

  constructor(
    readonly bucket: string,
    prefix: string,
    private readonly client: Client,
  ) {
    this.root = rootPrefix(prefix);
    this.location = `gs://${bucket}${prefix ? `/${prefix}` : ""}`;
    this.bucketRef = client.storage.bucket(bucket);
  }

  static async open(bucket: string, prefix: string, options: GcsOptions, env: Env): Promise<GcsStorage> {
    return new GcsStorage(bucket, prefix, await clientFor(options, env));
  }

  locationOf(key: string): string {
    checkKey(key);
    return `gs://${this.bucket}/${this.root}${key}`;
  }

  private file(key: string, generation?: string): Gcs.File {
    const name = this.root + checkKey(key);
    return generation === undefined ? this.bucketRef.file(name) : this.bucketRef.file(name, { generation });
  }

  private fail(error: unknown, location: string): HubcacheError {
    if (error instanceof HubcacheError) return error;
    const status = statusOf(error);
    const message = (error as GcsError | undefined)?.message ?? String(error);
    if (/Could not load the default credentials/i.test(message)) return noCredentials("gs", location, error);
    if (status === 404) {
      return isBucketMessage(message)
        ? bucketNotFound("gs", this.bucket, ` at ${this.client.endpoint}`, error)
        : objectNotFound(location, error);
    }
    if (status === 401) return badCredentials("gs", location, `HTTP 401: ${message}`, error);
    if (status === 403) return accessDenied(location, `HTTP 403: ${message}`, error);
    const net = networkCode(error);
    if (net) return storageUnreachable(location, this.client.endpoint, net, error);
    return storageFailure(location, message, status, error);
  }

  private static toObject(key: string, metadata: Gcs.FileMetadata): StoredObject {
    return {
      key,
      size: Number(metadata.size ?? 0),
      modifiedMs: metadata.updated ? Date.parse(metadata.updated) : undefined,
      version: metadata.generation === undefined ? undefined : String(metadata.generation),
    };
  }

  async stat(key: string): Promise<StoredObject | undefined> {
    if (!key) return undefined;
    try {
      const [metadata] = await this.file(key).getMetadata();
      return GcsStorage.toObject(key, metadata);
    } catch (error) {
      if (statusOf(error) === 404 && !isBucketMessage((error as GcsError).message)) return undefined;
      throw this.fail(error, this.locationOf(key));
    }
  }

  async read(key: string, range?: ByteRange): Promise<ObjectBody> {
    const location = this.locationOf(key);
    const stat = await this.stat(key);
    if (!stat) throw objectNotFound(location);
    const start = range?.start ?? 0;
    const end = Math.min(range?.end ?? stat.size - 1, stat.size - 1);
    // Pin the generation we measured, so a concurrent rewrite cannot splice two versions.
    const source = this.file(key, stat.version).createReadStream(
      range ? { start, end, validation: false } : { validation: "crc32c" },
    );
    const body = new PassThrough({ highWaterMark: 1 << 20 });
    source.on("error", (error: unknown) => body.destroy(this.fail(error, location)));
    body.on("close", () => {
      if (!source.destroyed) source.destroy();
    });
    source.pipe(body);
    return {
      body,
      length: range ? Math.max(0, end - start + 1) : stat.size,
      contentType: undefined,
    };
  }

  async *list(prefix: string): AsyncIterable<StoredObject> {
    const fullPrefix = this.root + prefix;
    let pageToken: string | undefined;
    do {
      let files: Gcs.File[];
      let next: { pageToken?: string } | null | undefined;
      try {
        [files, next] = (await this.bucketRef.getFiles({
          prefix: fullPrefix,
          autoPaginate: false,
          maxResults: 1000,
          ...(pageToken === undefined ? {} : { pageToken }),
        })) as unknown as [Gcs.File[], { pageToken?: string } | null | undefined];
      } catch (error) {
        throw this.fail(error, `gs://${this.bucket}/${fullPrefix}`);
      }
      for (const file of files) {
        if (!file.name.startsWith(this.root)) continue;
        yield GcsStorage.toObject(file.name.slice(this.root.length), file.metadata);
      }
      pageToken = next?.pageToken;
    } while (pageToken);
  }

  async write(key: string, body: WriteBody, options: WriteOptions = {}): Promise<boolean> {
    const location = this.locationOf(key);
    const file = this.file(key);
    const preconditionOpts = options.ifAbsent ? { ifGenerationMatch: 0 } : undefined;
    try {
      if (typeof body === "string" || body instanceof Uint8Array || options.ifAbsent) {
        const bytes =
          typeof body === "string" || body instanceof Uint8Array ? Buffer.from(body) : await buffer(body);
        await file.save(bytes, {
          resumable: false,
          ...(options.contentType === undefined ? {} : { contentType: options.contentType }),
          ...(preconditionOpts ? { preconditionOpts } : {}),
        });
        return true;
      }
      const resumable = options.contentLength === undefined || options.contentLength > RESUMABLE_THRESHOLD;
      await pipeline(
        body,
        file.createWriteStream({
          resumable,
          ...(options.contentType === undefined ? {} : { contentType: options.contentType }),
        }),
      );
      return true;
    } catch (error) {
      if (options.ifAbsent && statusOf(error) === 412) return false;
      throw this.fail(error, location);
    }
  }

  async publish(from: string, to: string): Promise<void> {
    try {
      await this.file(from).copy(this.file(to));
      await this.file(from).delete({ ignoreNotFound: true });
    } catch (error) {
      throw this.fail(error, this.locationOf(statusOf(error) === 404 ? from : to));
    }
  }

  async delete(key: string): Promise<void> {
    try {
      await this.file(key).delete({ ignoreNotFound: true });
    } catch (error) {
      throw this.fail(error, this.locationOf(key));
    }
  }
}
