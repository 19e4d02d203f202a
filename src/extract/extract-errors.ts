/** Turning whatever the extraction pipeline threw into one coded error. */
import { ErrorCode, HubcacheError, LockLost, RestartRequired, errnoCode, writeFailure } from "../errors.js";

export const TRUNCATED_HINT = "The download was interrupted or the host sent a partial file. Try again.";
const CORRUPT_HINT = "Try again; if it persists, the archive on the host is damaged (tell its publisher).";

/** The refusal of a whole archive because of one member that is not a plain file or folder. */
export function unsafeArchiveError(handle: string, reason: string): HubcacheError {
  return new HubcacheError(
    ErrorCode.UNSAFE_ARCHIVE,
    `The archive of ${handle} holds ${reason}; the whole archive was refused.`,
    {
      handle,
      hint: "Model archives hold only regular files and folders (TF Hub refuses links too), each under its own name. Do not use this archive; tell its publisher.",
    },
  );
}

/** The refusal of a whole archive because of one damaged member. */
export function corruptArchiveError(handle: string, reason: string): HubcacheError {
  return new HubcacheError(ErrorCode.CORRUPT, `The archive of ${handle} is corrupt: it holds ${reason}.`, {
    handle,
    hint: CORRUPT_HINT,
  });
}

/** tar's "cannot use the target directory" error (it is missing, or not a directory). */
export function isCwdError(error: unknown): boolean {
  return error instanceof Error && error.name === "CwdError";
}

interface Failure {
  error: unknown;
  handle: string;
  /** errno code (ENOSPC...) or zlib code (Z_BUF_ERROR...). */
  code: string | undefined;
  /** node-tar's own code (TAR_BAD_ARCHIVE...). */
  tarCode: unknown;
  message: string;
}

/** Turn whatever the extraction pipeline threw into a coded error (or the internal restart signal). */
export function classifyExtractError(
  error: unknown,
  handle: string,
): HubcacheError | RestartRequired | LockLost {
  if (error instanceof HubcacheError || error instanceof RestartRequired || error instanceof LockLost) {
    return error;
  }
  const failure: Failure = {
    error,
    handle,
    code: errnoCode(error),
    tarCode: (error as { tarCode?: unknown } | null)?.tarCode,
    message: error instanceof Error ? error.message : String(error),
  };
  return (
    abortedOrGone(failure) ??
    fileSystemRefused(failure) ??
    damagedArchive(failure) ??
    new HubcacheError(ErrorCode.IO, `Extracting ${handle} failed (${failure.code ?? failure.message}).`, {
      handle,
      hint: "Check the cache directory's disk and permissions, then try again.",
      cause: error,
    })
  );
}

/** The caller's signal fired, or the target directory was removed under us. */
function abortedOrGone({ error, handle, code, message }: Failure): HubcacheError | undefined {
  if (error instanceof Error && error.name === "AbortError") {
    return new HubcacheError(ErrorCode.ABORTED, `Downloading ${handle} was aborted.`, {
      handle,
      hint: "The caller's AbortSignal fired; nothing was cached.",
      cause: error,
    });
  }
  if (!isCwdError(error)) return undefined;
  return new HubcacheError(
    ErrorCode.IO,
    `The folder ${handle} was being extracted into is gone (${code ?? message}); extraction was stopped.`,
    {
      handle,
      hint: "Another process removed it, e.g. one that took this download over as stalled (it finishes the download). Otherwise, check that nothing cleans the cache directory while hubcache runs, and try again.",
      cause: error,
    },
  );
}

/** The disk is full, or the cache cannot be written. */
function fileSystemRefused({ error, handle, code }: Failure): HubcacheError | undefined {
  if (code === "ENOSPC" || code === "EDQUOT") {
    // The one ENOSPC/EDQUOT mapping (errors.ts writeFailure); never a refused-write error here.
    return writeFailure(error, {
      handle,
      what: `the files of ${handle} (the partial download was removed)`,
      notWritableHint: "",
    }) as HubcacheError;
  }

  if (code === "EACCES" || code === "EPERM" || code === "EROFS") {
    return new HubcacheError(
      ErrorCode.NOT_WRITABLE,
      `${handle} could not be written into the cache (${code}).`,
      {
        handle,
        hint: "Set TFHUB_CACHE_DIR (or --cache-dir / the cacheDir option) to a directory you can write.",
        cause: error,
      },
    );
  }
  return undefined;
}

/** gzip or tar found the archive cut short, damaged, or nested too deeply. */
function damagedArchive({ error, handle, code, tarCode, message }: Failure): HubcacheError | undefined {
  if (
    code === "Z_BUF_ERROR" ||
    /unexpected end of file/i.test(message) ||
    (tarCode === "TAR_BAD_ARCHIVE" && /truncated/i.test(message))
  ) {
    return new HubcacheError(ErrorCode.TRUNCATED, `The archive of ${handle} was cut short (${message}).`, {
      handle,
      hint: TRUNCATED_HINT,
      cause: error,
    });
  }
  if (
    (typeof code === "string" && code.startsWith("Z_")) ||
    tarCode === "TAR_BAD_ARCHIVE" ||
    tarCode === "TAR_ENTRY_INVALID" ||
    tarCode === "TAR_ABORT"
  ) {
    return new HubcacheError(ErrorCode.CORRUPT, `The archive of ${handle} is corrupt (${message}).`, {
      handle,
      hint: CORRUPT_HINT,
      cause: error,
    });
  }
  if (code === "ENAMETOOLONG") {
    return new HubcacheError(
      ErrorCode.UNSAFE_ARCHIVE,
      `The archive of ${handle} holds a name too long for this file system (${message}); the whole archive was refused.`,
      { handle, hint: "Do not use this archive; tell its publisher.", cause: error },
    );
  }
  if (tarCode === "TAR_ENTRY_ERROR" && /too deep|excessively deep/i.test(message)) {
    return new HubcacheError(
      ErrorCode.UNSAFE_ARCHIVE,
      `The archive of ${handle} nests folders too deeply; the whole archive was refused.`,
      { handle, hint: "Do not use this archive; tell its publisher.", cause: error },
    );
  }
  return undefined;
}
