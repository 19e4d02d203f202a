/** Shared setup for tests against real object-storage servers: environments, buckets, names. */
import { randomBytes } from "node:crypto";
import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3";
import { tempDir } from "./fixtures.js";
import { type GcsFake, createGcsFake } from "./gcs-fake.js";
import { type PausingProxy, startPausingProxy } from "./pausing-proxy.js";
import { TEST_ACCESS_KEY, TEST_SECRET_KEY, startS3rver } from "./s3rver.js";

/** Settings that keep the AWS SDK on this machine: no IMDS probe, no ~/.aws files, no warning. */
export const AWS_ISOLATION: Record<string, string> = {
  AWS_EC2_METADATA_DISABLED: "true",
  AWS_CONFIG_FILE: "/nonexistent/hubcache-test/config",
  AWS_SHARED_CREDENTIALS_FILE: "/nonexistent/hubcache-test/credentials",
  AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
};

/** The environment a process uses to reach a test S3 server with the standard variables. */
export function s3Env(
  endpoint: string,
  credentials = { key: TEST_ACCESS_KEY, secret: TEST_SECRET_KEY },
): Record<string, string> {
  return {
    ...AWS_ISOLATION,
    AWS_ACCESS_KEY_ID: credentials.key,
    AWS_SECRET_ACCESS_KEY: credentials.secret,
    AWS_REGION: "us-east-1",
    AWS_ENDPOINT_URL_S3: endpoint,
  };
}

/** The environment a process uses to reach the GCS test server. */
export function gcsEnv(url: string): Record<string, string> {
  return { STORAGE_EMULATOR_HOST: url, GOOGLE_CLOUD_PROJECT: "hubcache-test" };
}

/** A bucket name nobody else uses. */
export function uniqueBucket(prefix = "hubcache"): string {
  return `${prefix}-${randomBytes(5).toString("hex")}`;
}

export async function createS3Bucket(endpoint: string, bucket: string): Promise<void> {
  const client = new S3Client({
    endpoint,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: { accessKeyId: TEST_ACCESS_KEY, secretAccessKey: TEST_SECRET_KEY },
  });
  try {
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
  } finally {
    client.destroy();
  }
}

/** s3rver behind a recording (and pausing) proxy, and the GCS JSON API server, sharing one bucket name. */
export interface TestStores {
  bucket: string;
  /** The proxy in front of s3rver: requests are recorded, and can be held. */
  s3Proxy: PausingProxy;
  gcs: GcsFake;
  /** The environment that reaches both (the standard AWS and Google variables). */
  env: Record<string, string>;
  close(): Promise<void>;
}

export async function startTestStores(bucket = uniqueBucket()): Promise<TestStores> {
  const s3 = await startS3rver(await tempDir("s3rver-"));
  await createS3Bucket(s3.endpoint, bucket);
  const s3Proxy = await startPausingProxy(s3.endpoint);
  const gcs = createGcsFake({ buckets: [bucket] });
  const env = { ...s3Env(s3Proxy.endpoint), ...gcsEnv(await gcs.listen()) };
  return {
    bucket,
    s3Proxy,
    gcs,
    env,
    close: async () => {
      await Promise.all([s3Proxy.close(), s3.close(), gcs.close()]);
    },
  };
}
