/**
 * An http(s) archive handle's producer: the archive downloaded (retries, resume, idle timeout,
 * under the entry's lease) and extracted into the entry's temp dir. When the host cannot resume a
 * broken download, what was extracted is wiped and the download starts again from byte 0; first
 * tries, resumes and restarts share one retry budget.
 */
import { promises as fs } from "node:fs";
import path from "node:path";
import type { DownloadReport, Producer } from "../cache/ensure-entry.js";
import type { Readable } from "node:stream";
import { ErrorCode, HubcacheError, RestartRequired } from "../errors.js";
import type { EventListener } from "../events.js";
import { loadTar } from "../extract/extract.js";
import { FILE_SET_MEDIA_TYPE, MAX_FILE_SET_BYTES, parseFileSet } from "../extract/file-set.js";
import { extractWithProgress } from "../extract/with-progress.js";
import type { ParsedHandle } from "../handle.js";
import { openDownload } from "../net/download.js";
import { DEFAULT_RETRY_POLICY, RetryBudget } from "../net/retry.js";
import { redactUrl } from "../redact.js";
import { ARCHIVE_TAP, type ArchiveTap, type ResolvedSettings, type TappedOptions } from "../settings.js";
import { type FileSetContext, downloadFileSet } from "./file-set-download.js";
import { ROUTE, type RoutedOptions, withHttpClient } from "./http-client.js";
import { digestReport } from "./object-archive.js";

type HttpArchive = Extract<ParsedHandle, { kind: "http-archive" }>;

/** Any archive, or a mirror's list of the files (which it sends only to clients that name it). */
const ACCEPT_ARCHIVE = `${FILE_SET_MEDIA_TYPE}, */*;q=0.5`;

function isFileSet(contentType: string | undefined): boolean {
  return contentType?.split(";")[0]?.trim().toLowerCase() === FILE_SET_MEDIA_TYPE;
}

/** The list's body, whole (it is small: a few KB for a model). */
async function readListBody(stream: Readable, handle: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    length += chunk.length;
    if (length > MAX_FILE_SET_BYTES) {
      stream.destroy();
      throw new HubcacheError(
        ErrorCode.UNEXPECTED_RESPONSE,
        `The mirror's list of the files of ${handle} is over ${MAX_FILE_SET_BYTES} bytes.`,
        { handle, hint: "The mirror sent a broken answer; try again." },
      );
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, length);
}

export function httpArchiveProducer(
  parsed: HttpArchive,
  settings: ResolvedSettings,
  options: Pick<TappedOptions, "fetch" | "signal" | typeof ARCHIVE_TAP>,
  emit: EventListener,
): Producer {
  const tap = options[ARCHIVE_TAP];
  return (dir, touch, lease) =>
    withHttpClient(settings, options, parsed.handle, emit, (_fetch, transport) =>
      downloadArchive(parsed, {
        settings,
        signal: options.signal,
        emit,
        transport,
        dir,
        touch,
        lease,
        tap,
        mirrorBase: (options as RoutedOptions)[ROUTE]?.mirrorBase,
      }),
    );
}

/** What one download needs: the files form's context, less what each attempt adds (handle, budget). */
interface DownloadContext extends Omit<FileSetContext, "handle" | "budget"> {
  /** Internal: sees the received bytes (`hubcache serve` streams them to its clients). */
  tap: ArchiveTap | undefined;
  /** Sent to this mirror instead of the handle's host (it may answer with the files form). */
  mirrorBase: string | undefined;
}

async function downloadArchive(parsed: HttpArchive, context: DownloadContext): Promise<DownloadReport> {
  const { settings } = context;
  // One retry budget for the whole download: first tries, resumes and restarts share it.
  const budget = new RetryBudget({
    ...DEFAULT_RETRY_POLICY,
    retries: settings.retries,
    baseDelayMs: settings.retryDelayMs,
  });
  // Import tar while the request (and its redirects) is in flight. Not through a mirror: it answers
  // at once, mostly with the files form, which needs no tar, and the import (~30 ms of main
  // thread) would delay the files; a tar from it imports tar when it comes.
  if (context.mirrorBase === undefined) void loadTar().catch(() => undefined);
  for (;;) {
    try {
      return await downloadOnce(parsed, context, budget);
    } catch (error) {
      if (!(error instanceof RestartRequired)) throw error;
      // The host cannot resume: wipe what this attempt extracted and start from byte 0.
      await emptyDir(context.dir);
    }
  }
}

async function downloadOnce(
  parsed: HttpArchive,
  context: DownloadContext,
  budget: RetryBudget,
): Promise<DownloadReport> {
  const { handle } = parsed;
  const { emit, lease, settings } = context;
  emit({ type: "download-start", handle, url: redactUrl(parsed.downloadUrl) });
  const download = await openDownload(parsed.downloadUrl, {
    handle,
    transport: context.transport,
    idleTimeoutMs: settings.network.idleTimeoutMs,
    budget,
    emit,
    signal: context.signal,
    // Under a lock: stop before any request once it is lost; keep it fresh between attempts.
    hooks: { beforeAttempt: () => lease.ensureHeld(), whileWaiting: () => lease.waiting() },
    // A `hubcache serve` mirror may answer with its list of the files instead (extract/file-set.ts); a
    // hub is asked as before.
    ...(context.mirrorBase !== undefined ? { headers: { accept: ACCEPT_ARCHIVE } } : {}),
  });
  if (context.mirrorBase !== undefined && isFileSet(download.contentType)) {
    // The files form is never tapped: only an archive is streamed to a mirror's clients.
    const list = parseFileSet(await readListBody(download.stream, handle), handle);
    return downloadFileSet(list, context.mirrorBase, { ...context, handle, budget });
  }
  const body = context.tap ? context.tap(download) : download.stream;
  const result = await extractWithProgress(body, context.dir, {
    handle,
    emit,
    touch: context.touch,
    totalBytes: download.contentLength,
    contentType: download.contentType,
    maxExtractBytes: settings.maxExtractBytes,
    maxFiles: settings.maxFiles,
    minFreeBytes: settings.minFreeBytes,
    signal: context.signal,
    digests: true,
  });
  return digestReport(result);
}

/** Remove everything inside `dir`, keeping `dir` itself. */
async function emptyDir(dir: string): Promise<void> {
  for (const name of await fs.readdir(dir)) {
    await fs.rm(path.join(dir, name), { recursive: true, force: true, maxRetries: 3 });
  }
}
