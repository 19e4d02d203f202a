/** Coded errors shared by the storage backends: every failure names the location and says what to do. */
import { ErrorCode, HubcacheError } from "../errors.js";

export function objectNotFound(location: string, cause?: unknown): HubcacheError {
  return new HubcacheError(ErrorCode.NOT_FOUND, `${location} does not exist.`, {
    hint: "Check the path; object stores are case-sensitive and have no folders, only key prefixes.",
    cause,
  });
}

const missingBuckets = new WeakSet<HubcacheError>();

/** Is this a missing object (not a missing bucket)? */
export function isObjectNotFound(error: unknown): boolean {
  return error instanceof HubcacheError && error.code === ErrorCode.NOT_FOUND && !missingBuckets.has(error);
}

export function bucketNotFound(
  scheme: string,
  bucket: string,
  where: string,
  cause?: unknown,
): HubcacheError {
  const error = new HubcacheError(
    ErrorCode.NOT_FOUND,
    `The bucket ${scheme}://${bucket} does not exist${where}.`,
    {
      hint:
        scheme === "s3"
          ? "Check the bucket name, and the endpoint (AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL) and region (AWS_REGION) it lives at; create the bucket if it is new."
          : "Check the bucket name (and STORAGE_EMULATOR_HOST if you use an emulator); create the bucket if it is new.",
      cause,
    },
  );
  missingBuckets.add(error);
  return error;
}

export function badCredentials(
  scheme: string,
  location: string,
  detail: string,
  cause?: unknown,
): HubcacheError {
  return new HubcacheError(
    ErrorCode.UNAUTHORIZED,
    `The credentials were refused by ${location} (${detail}).`,
    {
      hint:
        scheme === "s3"
          ? "Check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or AWS_PROFILE and ~/.aws/credentials): the key or the secret is wrong, or the clock is off."
          : "Check your Application Default Credentials: GOOGLE_APPLICATION_CREDENTIALS, or run `gcloud auth application-default login`.",
      cause,
    },
  );
}

export function noCredentials(scheme: string, location: string, cause?: unknown): HubcacheError {
  return new HubcacheError(
    ErrorCode.UNAUTHORIZED,
    `No credentials were found to write to ${location}; anonymous access only reads public buckets.`,
    {
      hint:
        scheme === "s3"
          ? "Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with ~/.aws/credentials (the AWS SDK's standard credential chain)."
          : "Set GOOGLE_APPLICATION_CREDENTIALS, or run `gcloud auth application-default login`.",
      cause,
    },
  );
}

export function accessDenied(location: string, detail: string, cause?: unknown): HubcacheError {
  return new HubcacheError(ErrorCode.FORBIDDEN, `Access to ${location} was denied (${detail}).`, {
    hint: "Your credentials work but lack permission here: check the bucket's policy or IAM roles (reading needs list and get, a cache needs put and delete too).",
    cause,
  });
}

export function storageUnreachable(
  location: string,
  endpoint: string,
  detail: string,
  cause?: unknown,
): HubcacheError {
  return new HubcacheError(
    ErrorCode.NETWORK,
    `Could not reach the storage service for ${location} at ${endpoint} (${detail}).`,
    {
      hint: "Check your network, and the endpoint setting (AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL for S3-compatible stores, STORAGE_EMULATOR_HOST for GCS emulators).",
      cause,
    },
  );
}

export function readOnlyStorage(location: string): HubcacheError {
  return new HubcacheError(
    ErrorCode.UNSUPPORTED,
    `${location} is read-only: http(s) locations can be read, not written or listed.`,
    {
      hint: "Use s3://, gs:// or a local directory for a cache.",
    },
  );
}

export function createOnlyUnsupported(location: string, cause?: unknown): HubcacheError {
  return new HubcacheError(
    ErrorCode.UNSUPPORTED,
    `The store behind ${location} does not support create-only writes.`,
    {
      hint: "hubcache falls back to write-then-verify locks on such stores.",
      cause,
    },
  );
}

export function storageFailure(
  location: string,
  detail: string,
  status: number | undefined,
  cause?: unknown,
): HubcacheError {
  return new HubcacheError(ErrorCode.IO, `Storage request for ${location} failed: ${detail}.`, {
    status,
    hint:
      status !== undefined && status >= 500
        ? "The storage service had a problem; try again."
        : "Check the location and your access to it.",
    cause,
  });
}

/** The Node errno or network code of an error or of its cause chain (ECONNREFUSED, ENOTFOUND...). */
export function networkCode(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === "string" && /^(E[A-Z]+|UND_ERR_[A-Z_]+)$/.test(code)) return code;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}
