/** Shared setup for tests against real object-storage servers: environments, buckets, names. */
import { randomBytes } from "node:crypto";
import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3";
import { TEST_ACCESS_KEY, TEST_SECRET_KEY } from "./s3rver.js";

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
