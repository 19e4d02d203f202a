import { redactText } from "./redact.js";

/** Every stable error code hubcache throws. Match on `error.code`, never on the message. */
export const ErrorCode = {
  INVALID_HANDLE: "ERR_HUBCACHE_INVALID_HANDLE",
  INVALID_CONFIG: "ERR_HUBCACHE_INVALID_CONFIG",
  NOT_FOUND: "ERR_HUBCACHE_NOT_FOUND",
  UNAUTHORIZED: "ERR_HUBCACHE_UNAUTHORIZED",
  FORBIDDEN: "ERR_HUBCACHE_FORBIDDEN",
  HTTP: "ERR_HUBCACHE_HTTP",
  NETWORK: "ERR_HUBCACHE_NETWORK",
  TIMEOUT: "ERR_HUBCACHE_TIMEOUT",
  NOT_AN_ARCHIVE: "ERR_HUBCACHE_NOT_AN_ARCHIVE",
  TRUNCATED: "ERR_HUBCACHE_TRUNCATED",
  CORRUPT: "ERR_HUBCACHE_CORRUPT",
  UNSAFE_ARCHIVE: "ERR_HUBCACHE_UNSAFE_ARCHIVE",
  TOO_LARGE: "ERR_HUBCACHE_TOO_LARGE",
  DISK_FULL: "ERR_HUBCACHE_DISK_FULL",
  OFFLINE: "ERR_HUBCACHE_OFFLINE",
  NOT_WRITABLE: "ERR_HUBCACHE_NOT_WRITABLE",
  UNSUPPORTED: "ERR_HUBCACHE_UNSUPPORTED",
  UNEXPECTED_RESPONSE: "ERR_HUBCACHE_UNEXPECTED_RESPONSE",
  ABORTED: "ERR_HUBCACHE_ABORTED",
  IO: "ERR_HUBCACHE_IO",
  /** Cache management: the entry's download lock is held by a live process (`rm --force` removes it anyway). */
  IN_USE: "ERR_HUBCACHE_IN_USE",
  /** TensorFlow.js is installed but no backend (cpu, wasm, ...) is registered. */
  NO_BACKEND: "ERR_HUBCACHE_NO_BACKEND",
  /** `load()` was given a TensorFlow SavedModel (or TF1 Hub module), which TF.js cannot run. */
  SAVED_MODEL: "ERR_HUBCACHE_SAVED_MODEL",
  /** The files are not a usable TF.js model (no model.json, bad manifest, missing or short weight files). */
  INVALID_MODEL: "ERR_HUBCACHE_INVALID_MODEL",
  /**
   * A package this operation needs is not installed: a cloud SDK (optional dependency) for s3:// or
   * gs://, or a TensorFlow.js package (peer dependency) for `load()`. The hint is the `npm install` line.
   */
  MISSING_DEPENDENCY: "ERR_HUBCACHE_MISSING_DEPENDENCY",
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export interface HubcacheErrorOptions {
  /** The model handle the operation was about, as the user gave it (redacted when shown). */
  handle?: string | undefined;
  /** What the user can do about it. */
  hint?: string | undefined;
  /** HTTP status, when the error comes from an HTTP answer. */
  status?: number | undefined;
  cause?: unknown;
}

/**
 * The one error class hubcache throws for anything a user can reach.
 * `code` is stable; `message` and `hint` are for people and never contain credentials
 * or signed-URL query strings.
 */
export class HubcacheError extends Error {
  override readonly name = "HubcacheError";
  readonly code: ErrorCode;
  readonly handle: string | undefined;
  readonly hint: string | undefined;
  readonly status: number | undefined;

  constructor(code: ErrorCode, message: string, options: HubcacheErrorOptions = {}) {
    super(redactText(message), options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.handle = options.handle === undefined ? undefined : redactText(options.handle);
    this.hint = options.hint === undefined ? undefined : redactText(options.hint);
    this.status = options.status;
  }

  /** A plain object for `--json` output and logs. */
  toJSON(): { code: ErrorCode; message: string; handle?: string; hint?: string; status?: number } {
    return {
      code: this.code,
      message: this.message,
      ...(this.handle === undefined ? {} : { handle: this.handle }),
      ...(this.hint === undefined ? {} : { hint: this.hint }),
      ...(this.status === undefined ? {} : { status: this.status }),
    };
  }
}

export function isHubcacheError(value: unknown): value is HubcacheError {
  return value instanceof HubcacheError;
}

/**
 * Internal signal, never shown to users: the download broke after bytes arrived and the host cannot
 * resume it, so whatever was extracted must be wiped and the download started again from byte 0.
 */
export class RestartRequired extends Error {
  override readonly name = "RestartRequired";
  constructor(
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(reason, options);
  }
}

/**
 * Internal signal, never shown to users: the download lock was taken over (its holder was judged
 * stalled), so this download stops; the caller waits for the new holder instead of publishing.
 */
export class LockLost extends Error {
  override readonly name = "LockLost";
  constructor(readonly handle: string) {
    super(`The download lock of ${handle} was taken over by another process.`);
  }
}

/** The errno-style code of a Node system error, if it is one. */
export function errnoCode(error: unknown): string | undefined {
  if (typeof error === "object" && error !== null && "code" in error) {
    const code = error.code;
    return typeof code === "string" ? code : undefined;
  }
  return undefined;
}

/** The hint every ERR_HUBCACHE_ABORTED carries. */
const ABORTED_HINT = "The caller's AbortSignal fired; nothing was cached.";

/**
 * ERR_HUBCACHE_ABORTED, the one way to build it: `what` says what stopped ("Downloading x",
 * "Waiting for the download lock of x"); `cause` is the signal's reason or the AbortError.
 */
export function abortedError(handle: string | undefined, what: string, cause?: unknown): HubcacheError {
  return new HubcacheError(ErrorCode.ABORTED, `${what} was aborted.`, { handle, hint: ABORTED_HINT, cause });
}

/** Is this the error an aborted signal makes a Node or web API throw (not yet a HubcacheError)? */
export function isAbortError(error: unknown): boolean {
  return error instanceof Error && (error.name === "AbortError" || error.name === "TimeoutError");
}

/** Errno codes of a write that failed for want of space (a full disk, or a quota). */
const DISK_FULL_CODES = new Set(["ENOSPC", "EDQUOT"]);
/** Errno codes of a write that was refused (permissions, a read-only filesystem). */
const NOT_WRITABLE_CODES = new Set(["EACCES", "EPERM", "EROFS"]);

export interface WriteFailureText {
  handle?: string | undefined;
  /** What could not be written, e.g. "the cache directory /x" (used in both messages). */
  what: string;
  /** Hint for a refused write (the disk-full hint is the same everywhere). */
  notWritableHint: string;
  /** Message for a refused write; default: "<what> is not writable (<code>)." */
  notWritableMessage?: string | undefined;
}

/**
 * The one ENOSPC/EDQUOT → ERR_HUBCACHE_DISK_FULL and EACCES/EPERM/EROFS → ERR_HUBCACHE_NOT_WRITABLE
 * mapping. Any other error (or `error` already coded) is returned as it is.
 */
export function writeFailure(error: unknown, text: WriteFailureText): unknown {
  if (error instanceof HubcacheError) return error;
  const code = errnoCode(error);
  if (code !== undefined && DISK_FULL_CODES.has(code)) {
    return new HubcacheError(ErrorCode.DISK_FULL, `No space left to write ${text.what} (${code}).`, {
      handle: text.handle,
      hint: "Free some space, or point TFHUB_CACHE_DIR at a larger disk.",
      cause: error,
    });
  }
  if (code !== undefined && NOT_WRITABLE_CODES.has(code)) return notWritableError(error, text);
  return error;
}

/** ERR_HUBCACHE_NOT_WRITABLE for a write that failed (any errno, or none). */
export function notWritableError(error: unknown, text: WriteFailureText): HubcacheError {
  const code = errnoCode(error) ?? "error";
  return new HubcacheError(
    ErrorCode.NOT_WRITABLE,
    text.notWritableMessage ?? `${text.what} is not writable (${code}).`,
    { handle: text.handle, hint: text.notWritableHint, cause: error },
  );
}
