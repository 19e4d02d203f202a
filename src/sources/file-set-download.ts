/**
 * The files form of a download (src/extract/file-set.ts): a `hubcache serve` mirror answered the
 * archive request with the list of the model's files, and each file is fetched from the mirror
 * (four big ones at a time, largest first, and beside them the small ones, four at a time), written
 * straight to its place in the entry's temp dir and checked
 * against the list's size and CRC-32. Every guarantee of the tar path holds: the list passes the
 * archive rules before anything is written, maxFiles, maxExtractBytes and the disk guard apply,
 * each file's body is retried and resumed (Range + If-Range) under the one retry budget and the
 * entry's lease, `progress` events flow, and the first failure stops the others and waits for every
 * write to end; the temp dir is published only whole (ensure-entry.ts).
 */
import { promises as fs } from "node:fs";
import path from "node:path";
import type { DownloadLease, DownloadReport } from "../cache/ensure-entry.js";
import { ErrorCode, HubcacheError, RestartRequired, abortedError } from "../errors.js";
import type { EventListener } from "../events.js";
import { DiskBudget, diskGuardError, planGuard } from "../extract/extract-guard.js";
import { type FileSet, type FileSetFile, planFileSet } from "../extract/file-set.js";
import { writeFileFrom } from "../extract/file-writer.js";
import { DEFAULT_MAX_FILES } from "../extract/member-check.js";
import { PROGRESS_INTERVAL_MS } from "../extract/with-progress.js";
import { type Transport, openDownload } from "../net/download.js";
import type { RetryBudget } from "../net/retry.js";
import type { ResolvedSettings } from "../settings.js";

/** Big files fetched at once, and small files beside them. */
const FILES_IN_FLIGHT = 4;
/**
 * Files up to this size are small: fetched on lanes of their own, so that their round trips do not
 * hold back the start of the big ones (which carry nearly all the bytes), nor wait behind them.
 */
const SMALL_FILE_BYTES = 1 << 20;

export interface FileSetContext {
  handle: string;
  settings: ResolvedSettings;
  signal: AbortSignal | undefined;
  emit: EventListener;
  transport: Transport;
  dir: string;
  touch: () => void;
  lease: DownloadLease;
  budget: RetryBudget;
}

/**
 * The URL of each file: `<mirror><filesBase>/<path>`, on the mirror the user set (with its path
 * prefix, if it sits behind a reverse proxy at one), never elsewhere.
 */
function fileUrl(fileSet: FileSet, mirrorBase: string, file: FileSetFile): string {
  // filesBase is exactly /_files/<sha1> (parseFileSet); the base has no trailing slash.
  const parts = file.path.split("/").map(encodeURIComponent).join("/");
  return `${mirrorBase}${fileSet.filesBase}/${parts}`;
}

/** Fetch every file of `fileSet` into `context.dir`; the report gives the list's archive digests. */
export async function downloadFileSet(
  fileSet: FileSet,
  mirrorBase: string,
  context: FileSetContext,
): Promise<DownloadReport> {
  const { handle, settings, dir } = context;
  const { totalBytes } = planFileSet(fileSet, {
    handle,
    maxFiles: settings.maxFiles ?? DEFAULT_MAX_FILES,
    maxExtractBytes: settings.maxExtractBytes,
  });
  const limits = await planGuard(handle, dir, settings.maxExtractBytes, settings.minFreeBytes);
  if (limits.fitBytes !== undefined && totalBytes > limits.fitBytes) {
    throw diskGuardError(limits, limits.freeAtStart ?? 0);
  }
  // Every folder first (the list's, and each file's own, once each): the lanes then start their
  // requests in the order of their queues, with no mkdir of their own to wait for.
  const parents = fileSet.files.map((file) => path.posix.dirname(file.path)).filter((dir) => dir !== ".");
  const folders = new Set([...fileSet.dirs, ...parents]);
  for (const folder of folders) {
    await fs.mkdir(path.join(dir, ...folder.split("/")), { recursive: true });
  }
  const stop = new AbortController();
  const onAbort = (): void => stop.abort(context.signal?.reason);
  context.signal?.addEventListener("abort", onAbort, { once: true });
  const disk = new DiskBudget(limits, () => stop.abort());
  const progress = new FileSetProgress(context, totalBytes);
  const crc32ByPath = new Map<string, number>();
  // The big files largest first (the longest ones start first, so they end together), the small
  // ones smallest first; each queue has its own lanes.
  const big = fileSet.files.filter((file) => file.size > SMALL_FILE_BYTES).sort((a, b) => b.size - a.size);
  const small = fileSet.files.filter((file) => file.size <= SMALL_FILE_BYTES).sort((a, b) => a.size - b.size);
  let failure: { error: unknown } | undefined;
  const worker = async (queue: FileSetFile[]): Promise<void> => {
    for (let file = queue.shift(); file && !failure; file = queue.shift()) {
      try {
        const crc = await fetchFile(fileSet, mirrorBase, file, {
          context,
          disk,
          progress,
          signal: stop.signal,
        });
        if (file.size > 0) crc32ByPath.set(file.path, crc);
        progress.fileDone();
      } catch (error) {
        failure ??= { error };
        stop.abort();
      }
    }
  };
  try {
    const lanes = (queue: FileSetFile[]): Promise<void>[] =>
      Array.from({ length: Math.min(FILES_IN_FLIGHT, queue.length) }, () => worker(queue));
    await Promise.all([...lanes(big), ...lanes(small)]);
  } finally {
    context.signal?.removeEventListener("abort", onAbort);
  }
  if (failure) throw disk.problem ?? failure.error;
  progress.report(true);
  return { archiveBytes: fileSet.archiveBytes, archiveSha256: fileSet.archiveSha256, crc32ByPath };
}

interface FetchContext {
  context: FileSetContext;
  disk: DiskBudget;
  progress: FileSetProgress;
  signal: AbortSignal;
}

/** One file, fetched and written; started over from byte 0 when the mirror cannot resume it. */
async function fetchFile(
  fileSet: FileSet,
  mirrorBase: string,
  file: FileSetFile,
  fetch: FetchContext,
): Promise<number> {
  const { context, disk, progress, signal } = fetch;
  const { handle, settings, lease } = context;
  const target = path.join(context.dir, ...file.path.split("/"));
  if (file.size === 0) {
    await fs.writeFile(target, "", { mode: 0o644 });
    return 0;
  }
  for (;;) {
    if (signal.aborted) throw abortedError(handle, `Downloading ${handle}`);
    const download = await openDownload(fileUrl(fileSet, mirrorBase, file), {
      handle,
      transport: context.transport,
      idleTimeoutMs: settings.network.idleTimeoutMs,
      budget: context.budget,
      emit: context.emit,
      signal,
      hooks: { beforeAttempt: () => lease.ensureHeld(), whileWaiting: () => lease.waiting() },
    }).catch((error: unknown) => {
      throw listedFileGone(error, file, handle);
    });
    let received = 0;
    try {
      return await writeFileFrom(download.stream, target, {
        handle,
        name: file.path,
        size: file.size,
        crc32: file.crc32,
        budget: disk,
        onBytes: (bytes) => {
          received += bytes;
          progress.bytes(bytes);
        },
      });
    } catch (error) {
      // A resume (or a retry from byte 0) runs inside the body: its 404 comes out here.
      if (!(error instanceof RestartRequired)) throw listedFileGone(error, file, handle);
      progress.bytes(-received);
    }
  }
}

/**
 * A 404 or 410 for a file the mirror listed means the mirror's copy went away (removed or replaced)
 * between its list and this request, not a misspelt handle: said so. Anything else is unchanged.
 */
function listedFileGone(error: unknown, file: FileSetFile, handle: string): unknown {
  if (!(error instanceof HubcacheError) || (error.status !== 404 && error.status !== 410)) return error;
  return new HubcacheError(
    ErrorCode.UNEXPECTED_RESPONSE,
    `The mirror listed ${file.path} of ${handle} but no longer has it (HTTP ${error.status}).`,
    {
      handle,
      status: error.status,
      hint: "The mirror's copy was removed or replaced while it was being read: try again. If every file fails so, check that a proxy in front of the mirror forwards /_files/.",
      cause: error,
    },
  );
}

/** `progress` events (throttled, each refreshing the lock), like extractWithProgress's. */
class FileSetProgress {
  private received = 0;
  private files = 0;
  private lastEmit = 0;
  constructor(
    private readonly context: FileSetContext,
    private readonly totalBytes: number,
  ) {}
  bytes(delta: number): void {
    this.received += delta;
    const now = Date.now();
    if (now - this.lastEmit < PROGRESS_INTERVAL_MS) return;
    this.lastEmit = now;
    this.context.touch();
    this.report(false);
  }
  fileDone(): void {
    this.files++;
  }
  report(done: boolean): void {
    this.context.emit({
      type: "progress",
      handle: this.context.handle,
      downloadedBytes: this.received,
      totalBytes: this.totalBytes,
      extractedBytes: this.received,
      files: this.files,
      done,
    });
  }
}
