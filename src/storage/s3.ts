/**
 * s3://bucket/prefix through the official AWS SDK v3 (@aws-sdk/client-s3, loaded on first use), so
 * every S3-compatible store works with the SDK's own configuration: the standard credential chain
 * (env, ~/.aws files, SSO, web identity, instance roles), AWS_REGION, AWS_ENDPOINT_URL_S3 /
 * AWS_ENDPOINT_URL. hubcache adds: path-style addressing whenever an endpoint is set (custom
 * stores rarely resolve BUCKET.host names), checksums only when required (aws-chunked uploads are
 * refused or stored corrupt by several S3-compatible servers), region redirects followed, a
 * us-east-1 fallback when no region is configured, and unsigned reads when no credentials exist at
 * all (public buckets).
 */
import { createHash } from "node:crypto";
import type { Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import type * as S3 from "@aws-sdk/client-s3";
import type * as LibStorage from "@aws-sdk/lib-storage";
import type { Env } from "../config.js";
import { HubcacheError } from "../errors.js";
import {
  accessDenied,
  badCredentials,
  bucketNotFound,
  createOnlyUnsupported,
  networkCode,
  noCredentials,
  objectNotFound,
  storageFailure,
  storageUnreachable,
} from "./errors.js";
import { checkKey, rootPrefix } from "./location.js";
import { loadSdk } from "./sdk.js";
import type { ByteRange, ObjectBody, Storage, StoredObject, WriteBody, WriteOptions } from "./types.js";

type S3Module = typeof S3;
type LibStorageModule = typeof LibStorage;

export interface S3Options {
  /** Endpoint of an S3-compatible store. Default: AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL, then AWS. */
  endpoint?: string | undefined;
  /** Default: the SDK's (AWS_REGION, the profile), else us-east-1. */
  region?: string | undefined;
  /** Default: true when an endpoint is set; HUBCACHE_S3_FORCE_PATH_STYLE=1/0 overrides. */
  forcePathStyle?: boolean | undefined;
  /** Default: the SDK's standard credential chain. */
  credentials?:
    { accessKeyId: string; secretAccessKey: string; sessionToken?: string | undefined } | undefined;
}

/** Above this, uploads go multipart (parallel parts); below, one PUT. */
const MULTIPART_THRESHOLD = 64 * 1024 * 1024;
/** CopyObject's limit; bigger objects are copied through the client. */
const MAX_COPY_BYTES = 5 * 1024 * 1024 * 1024;

const CREDENTIAL_ERRORS = new Set([
  "SignatureDoesNotMatch",
  "InvalidAccessKeyId",
  "InvalidToken",
  "ExpiredToken",
  "TokenRefreshRequired",
  "InvalidClientTokenId",
  "AuthorizationHeaderMalformed",
  "RequestTimeTooSkewed",
]);

interface Clients {
  sdk: S3Module;
  signed: S3.S3Client;
  /** Unsigned requests, for public buckets when no credentials exist. */
  anonymous: () => S3.S3Client;
  endpoint: string;
}

const clientCache = new Map<string, Promise<Clients>>();

function envBool(env: Env, name: string): boolean | undefined {
  const value = env[name]?.trim().toLowerCase();
  if (!value) return undefined;
  return ["1", "true", "yes", "on"].includes(value);
}

/** The SDK settings hubcache derives from options and environment (exported for tests and docs). */
export function s3ClientSettings(options: S3Options, env: Env): S3.S3ClientConfig {
  const ignoreEnvEndpoint = envBool(env, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS") === true;
  const endpoint =
    options.endpoint ??
    (ignoreEnvEndpoint ? undefined : env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL || undefined);
  const forcePathStyle =
    options.forcePathStyle ?? envBool(env, "HUBCACHE_S3_FORCE_PATH_STYLE") ?? endpoint !== undefined;
  const region = options.region ?? (env.AWS_REGION || env.AWS_DEFAULT_REGION || undefined);
  // The SDK reads process.env itself; an explicit `env` (tests, embedding apps) must win the same way.
  const given = options.credentials;
  const credentials =
    (given && {
      accessKeyId: given.accessKeyId,
      secretAccessKey: given.secretAccessKey,
      ...(given.sessionToken === undefined ? {} : { sessionToken: given.sessionToken }),
    }) ??
    (env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY
      ? {
          accessKeyId: env.AWS_ACCESS_KEY_ID,
          secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
          ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}),
        }
      : undefined);
  return {
    ...(endpoint === undefined ? {} : { endpoint }),
    ...(region === undefined ? {} : { region }),
    ...(credentials === undefined ? {} : { credentials }),
    ...(env.AWS_PROFILE && credentials === undefined ? { profile: env.AWS_PROFILE } : {}),
    forcePathStyle,
    followRegionRedirects: true,
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
  };
}

/** Construct without the SDK's NodeVersionSupportWarning, which is about SDK releases newer than the one pinned. */
function construct(sdk: S3Module, config: S3.S3ClientConfig): S3.S3Client {
  const name = "AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED";
  const unset = process.env[name] === undefined;
  if (unset) process.env[name] = "true";
  try {
    return new sdk.S3Client(config);
  } finally {
    if (unset) delete process.env[name];
  }
}

async function clientsFor(options: S3Options, env: Env): Promise<Clients> {
  const config = s3ClientSettings(options, env);
  const key = JSON.stringify({
    endpoint: config.endpoint,
    region: config.region,
    forcePathStyle: config.forcePathStyle,
    profile: config.profile,
    credentials: config.credentials
      ? createHash("sha256").update(JSON.stringify(config.credentials)).digest("hex")
      : undefined,
  });
  let clients = clientCache.get(key);
  if (!clients) {
    clients = (async () => {
      const sdk = await loadSdk("@aws-sdk/client-s3", () => import("@aws-sdk/client-s3"), "s3", [
        "@aws-sdk/client-s3",
        "@aws-sdk/lib-storage",
      ]);
      let signed = construct(sdk, config);
      let resolved = config;
      if (config.region === undefined) {
        try {
          await signed.config.region();
        } catch {
          resolved = { ...config, region: "us-east-1" };
          signed.destroy();
          signed = construct(sdk, resolved);
        }
      }
      let anonymous: S3.S3Client | undefined;
      return {
        sdk,
        signed,
        anonymous: () => {
          anonymous ??= unsignedClient(sdk, resolved);
          return anonymous;
        },
        endpoint: typeof config.endpoint === "string" ? config.endpoint : "AWS S3",
      };
    })();
    clients.catch(() => clientCache.delete(key));
    clientCache.set(key, clients);
  }
  return clients;
}

function unsignedClient(sdk: S3Module, config: S3.S3ClientConfig): S3.S3Client {
  const client = construct(sdk, {
    ...config,
    credentials: { accessKeyId: "anonymous", secretAccessKey: "anonymous" },
  });
  type Middleware = Parameters<S3.S3Client["middlewareStack"]["addRelativeTo"]>[0];
  const stripSignature = ((next: (args: unknown) => Promise<unknown>) =>
    async (args: { request?: { headers?: Record<string, string> } }) => {
      const headers = args.request?.headers;
      if (headers) {
        for (const name of Object.keys(headers)) {
          const lower = name.toLowerCase();
          if (lower === "authorization" || lower === "x-amz-security-token") delete headers[name];
        }
      }
      return next(args);
    }) as unknown as Middleware;
  client.middlewareStack.addRelativeTo(stripSignature, {
    relation: "after",
    toMiddleware: "httpSigningMiddleware",
    name: "hubcacheUnsignedRequest",
  });
  return client;
}

interface SdkError {
  name?: string;
  message?: string;
  Code?: string;
  $metadata?: { httpStatusCode?: number };
}

function statusOf(error: unknown): number | undefined {
  return (error as SdkError | undefined)?.$metadata?.httpStatusCode;
}

function nameOf(error: unknown): string {
  const e = error as SdkError | undefined;
  return e?.Code ?? e?.name ?? "Error";
}

function isCredentialsMissing(error: unknown): boolean {
  return nameOf(error) === "CredentialsProviderError";
}

export class S3Storage implements Storage {
  readonly scheme = "s3";
  readonly readOnly = false;
  readonly location: string;
  private readonly root: string;
  private useAnonymous = false;

  constructor(
    readonly bucket: string,
    prefix: string,
    private readonly clients: Clients,
  ) {
    this.root = rootPrefix(prefix);
    this.location = `s3://${bucket}${prefix ? `/${prefix}` : ""}`;
  }

  static async open(bucket: string, prefix: string, options: S3Options, env: Env): Promise<S3Storage> {
    return new S3Storage(bucket, prefix, await clientsFor(options, env));
  }

  locationOf(key: string): string {
    checkKey(key);
    return `s3://${this.bucket}/${this.root}${key}`;
  }

  private fullKey(key: string): string {
    return this.root + checkKey(key);
  }

  /** Map an SDK error to a coded HubcacheError. */
  private fail(error: unknown, location: string): HubcacheError {
    if (error instanceof HubcacheError) return error;
    const name = nameOf(error);
    const status = statusOf(error);
    const message = (error as SdkError | undefined)?.message ?? String(error);
    if (isCredentialsMissing(error)) return noCredentials("s3", location, error);
    if (name === "NoSuchBucket") {
      return bucketNotFound("s3", this.bucket, ` at ${this.clients.endpoint}`, error);
    }
    if (name === "NoSuchKey" || (status === 404 && name === "NotFound")) {
      return objectNotFound(location, error);
    }
    if (CREDENTIAL_ERRORS.has(name)) return badCredentials("s3", location, name, error);
    if (status === 403) return accessDenied(location, name === "Forbidden" ? "HTTP 403" : name, error);
    const net = networkCode(error);
    if (net) return storageUnreachable(location, this.clients.endpoint, net, error);
    return storageFailure(location, `${name}: ${message}`, status, error);
  }

  /** Run a read-only call; with no credentials anywhere, retry it unsigned (public buckets). */
  private async readCall<T>(call: (client: S3.S3Client) => Promise<T>): Promise<T> {
    if (this.useAnonymous) return call(this.clients.anonymous());
    try {
      return await call(this.clients.signed);
    } catch (error) {
      if (!isCredentialsMissing(error)) throw error;
      this.useAnonymous = true;
      return call(this.clients.anonymous());
    }
  }

  async stat(key: string): Promise<StoredObject | undefined> {
    const Key = this.fullKey(key);
    if (!Key) return undefined;
    try {
      const head = await this.readCall((client) =>
        client.send(new this.clients.sdk.HeadObjectCommand({ Bucket: this.bucket, Key })),
      );
      return {
        key,
        size: head.ContentLength ?? 0,
        modifiedMs: head.LastModified?.getTime(),
        version: head.ETag,
      };
    } catch (error) {
      if (statusOf(error) === 404) return undefined;
      if (statusOf(error) === 403) {
        // HEAD answers carry no error code: ask again with a GET to tell bad credentials from a denial.
        const body = await this.read(key, { start: 0, end: 0 });
        body.body.destroy();
      }
      throw this.fail(error, this.locationOf(key));
    }
  }

  async read(key: string, range?: ByteRange): Promise<ObjectBody> {
    const Key = this.fullKey(key);
    try {
      const Range = range ? `bytes=${range.start}-${range.end ?? ""}` : undefined;
      const out = await this.readCall((client) =>
        client.send(new this.clients.sdk.GetObjectCommand({ Bucket: this.bucket, Key, Range })),
      );
      const body = out.Body as Readable | undefined;
      if (!body) throw objectNotFound(this.locationOf(key));
      return { body, length: out.ContentLength, contentType: out.ContentType };
    } catch (error) {
      throw this.fail(error, this.locationOf(key));
    }
  }

  async *list(prefix: string): AsyncIterable<StoredObject> {
    const Prefix = this.root + prefix;
    let ContinuationToken: string | undefined;
    do {
      let page: S3.ListObjectsV2CommandOutput;
      try {
        page = await this.readCall((client) =>
          client.send(
            new this.clients.sdk.ListObjectsV2Command({ Bucket: this.bucket, Prefix, ContinuationToken }),
          ),
        );
      } catch (error) {
        throw this.fail(error, `s3://${this.bucket}/${Prefix}`);
      }
      for (const item of page.Contents ?? []) {
        if (item.Key === undefined || !item.Key.startsWith(this.root)) continue;
        yield {
          key: item.Key.slice(this.root.length),
          size: item.Size ?? 0,
          modifiedMs: item.LastModified?.getTime(),
          version: item.ETag,
        };
      }
      ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (ContinuationToken);
  }

  async write(key: string, body: WriteBody, options: WriteOptions = {}): Promise<boolean> {
    const Key = this.fullKey(key);
    const location = this.locationOf(key);
    const { sdk, signed } = this.clients;
    try {
      if (options.ifAbsent) {
        const bytes =
          typeof body === "string" || body instanceof Uint8Array ? Buffer.from(body) : await buffer(body);
        try {
          await signed.send(
            new sdk.PutObjectCommand({
              Bucket: this.bucket,
              Key,
              Body: bytes,
              IfNoneMatch: "*",
              ContentType: options.contentType,
            }),
          );
          return true;
        } catch (error) {
          const status = statusOf(error);
          // 412: it exists. 409 ConditionalRequestConflict: a concurrent create-only write won.
          if (status === 412 || (status === 409 && nameOf(error) === "ConditionalRequestConflict")) {
            return false;
          }
          if (status === 501 || nameOf(error) === "NotImplemented") {
            throw createOnlyUnsupported(location, error);
          }
          throw error;
        }
      }
      if (typeof body === "string" || body instanceof Uint8Array) {
        await signed.send(
          new sdk.PutObjectCommand({
            Bucket: this.bucket,
            Key,
            Body: Buffer.from(body),
            ContentType: options.contentType,
          }),
        );
        return true;
      }
      if (options.contentLength !== undefined && options.contentLength <= MULTIPART_THRESHOLD) {
        await signed.send(
          new sdk.PutObjectCommand({
            Bucket: this.bucket,
            Key,
            Body: body,
            ContentLength: options.contentLength,
            ContentType: options.contentType,
          }),
        );
        return true;
      }
      // Unknown or large size: multipart, parts uploaded in parallel.
      const { Upload } = await loadSdk<LibStorageModule>(
        "@aws-sdk/lib-storage",
        () => import("@aws-sdk/lib-storage"),
        "s3",
      );
      const upload = new Upload({
        client: signed,
        params: { Bucket: this.bucket, Key, Body: body, ContentType: options.contentType },
        partSize: 16 * 1024 * 1024,
        queueSize: 4,
        leavePartsOnError: false,
      });
      await upload.done();
      return true;
    } catch (error) {
      throw this.fail(error, location);
    }
  }

  async publish(from: string, to: string): Promise<void> {
    const source = this.fullKey(from);
    const target = this.fullKey(to);
    const { sdk, signed } = this.clients;
    try {
      const stat = await this.stat(from);
      if (!stat) throw objectNotFound(this.locationOf(from));
      if (stat.size > MAX_COPY_BYTES) {
        const { body } = await this.read(from);
        await this.write(to, body, { contentLength: stat.size });
      } else {
        const CopySource = `${this.bucket}/${source.split("/").map(encodeURIComponent).join("/")}`;
        await signed.send(new sdk.CopyObjectCommand({ Bucket: this.bucket, Key: target, CopySource }));
      }
      await this.delete(from);
    } catch (error) {
      throw this.fail(error, this.locationOf(to));
    }
  }

  async delete(key: string): Promise<void> {
    const Key = this.fullKey(key);
    try {
      await this.clients.signed.send(new this.clients.sdk.DeleteObjectCommand({ Bucket: this.bucket, Key }));
    } catch (error) {
      if (statusOf(error) === 404 && nameOf(error) !== "NoSuchBucket") return;
      throw this.fail(error, this.locationOf(key));
    }
  }
}
