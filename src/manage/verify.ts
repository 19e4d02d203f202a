/**
 * `verifyEntries` (`hubcache verify`): every file of each entry checked against hubcache's record
 * of what was extracted: present, same size, and (records written since issue 11) the same CRC-32,
 * so a changed byte is found. Entries hubcache did not write (Python tensorflow_hub's: no record)
 * are "not verifiable", not damaged; records without digests are checked by size only, and say so.
 * `fix` downloads damaged entries again (the handle must be known: given, or unredacted in the record).
 */
import type { EntryStore } from "../cache/entry-store.js";
import { handleHash } from "../cache/layout.js";
import { type RecordFile, crc32Hex } from "../cache/record.js";
import { ErrorCode, HubcacheError } from "../errors.js";
import { redactUrl } from "../redact.js";
import type { ResolveOptions } from "../settings.js";
import { type CacheEntry, collectEntries } from "../cache/entry-list.js";
import { type ManageOptions, openManagedStore } from "./open-store.js";
import { findEntry } from "./remove.js";
import { crc32 } from "../extract/crc32.js";

export interface VerifyOptions extends ManageOptions {
  /** Download damaged entries again. */
  fix?: boolean | undefined;
  /** For `fix`: the options of the resolve that downloads them again (network settings, events). */
  resolveOptions?: ResolveOptions | undefined;
}

export interface FileProblem {
  file: string;
  problem: "missing" | "size" | "crc32" | "unexpected";
  detail: string;
}

export interface VerifiedEntry {
  entry: CacheEntry;
  status: "ok" | "damaged" | "not-verifiable" | "downloading";
  /** What was compared: every byte (`crc32`), or only sizes (a record from before digests). */
  checked: "crc32" | "size" | null;
  problems: FileProblem[];
  /** With `fix`: downloaded again (true), or why not. */
  fixed: boolean | null;
  fixError: HubcacheError | null;
}

export interface VerifyResult {
  cacheDir: string;
  entries: VerifiedEntry[];
  /** Targets that matched no entry. */
  notFound: string[];
  damaged: number;
}

export async function verifyEntries(
  targets?: readonly string[],
  options: VerifyOptions = {},
): Promise<VerifyResult> {
  const { store, settings } = await openManagedStore(options);
  const all = await collectEntries(store);
  const notFound: string[] = [];
  let chosen = all;
  if (targets && targets.length > 0) {
    chosen = [];
    for (const target of targets) {
      const entry = findEntry(all, target);
      if (entry) chosen.push(entry);
      else notFound.push(redactUrl(target));
    }
  }
  const entries: VerifiedEntry[] = [];
  for (const entry of chosen) {
    const verified = await verifyOne(store, entry);
    if (verified.status === "damaged" && options.fix) await fixOne(verified, targets ?? [], options);
    entries.push(verified);
  }
  const damaged = entries.filter((e) => e.status === "damaged" && e.fixed !== true).length;
  return { cacheDir: settings.cacheDir, entries, notFound, damaged };
}

async function verifyOne(store: EntryStore, entry: CacheEntry): Promise<VerifiedEntry> {
  const base = { entry, problems: [] as FileProblem[], fixed: null, fixError: null };
  if (entry.state === "downloading") return { ...base, status: "downloading", checked: null };
  const { record, files, open } = await store.entryFiles(entry.hash);
  if (!record) return { ...base, status: "not-verifiable", checked: null };
  const present = new Map(files.map((file) => [file.path, file.size]));
  const problems: FileProblem[] = [];
  let allDigests = true;
  for (const file of record.files) {
    const size = present.get(file.path);
    present.delete(file.path);
    if (size === undefined) {
      problems.push({ file: file.path, problem: "missing", detail: "the file is missing" });
    } else if (size !== file.size) {
      problems.push({ file: file.path, problem: "size", detail: `${size} bytes, expected ${file.size}` });
    } else if (file.crc32 === undefined) {
      // An empty file of the right size has the right bytes: records keep no CRC for it.
      if (file.size !== 0) allDigests = false;
    } else {
      const problem = await checkCrc32(file, open);
      if (problem) problems.push(problem);
    }
  }
  for (const extra of present.keys()) {
    problems.push({ file: extra, problem: "unexpected", detail: "not in the archive as extracted" });
  }
  return {
    ...base,
    status: problems.length > 0 ? "damaged" : "ok",
    checked: allDigests ? "crc32" : "size",
    problems,
  };
}

async function checkCrc32(
  file: RecordFile,
  open: (file: string) => Promise<NodeJS.ReadableStream>,
): Promise<FileProblem | undefined> {
  let crc = 0;
  try {
    for await (const chunk of await open(file.path)) crc = crc32(chunk as Buffer, crc);
  } catch (error) {
    return { file: file.path, problem: "missing", detail: `cannot be read (${(error as Error).message})` };
  }
  const actual = crc32Hex(crc);
  return actual === file.crc32
    ? undefined
    : { file: file.path, problem: "crc32", detail: `CRC-32 ${actual}, expected ${file.crc32}` };
}

/** Download a damaged entry again: remove it, then resolve its handle (the exact one: sha1 must match). */
async function fixOne(
  verified: VerifiedEntry,
  targets: readonly string[],
  options: VerifyOptions,
): Promise<void> {
  const { entry } = verified;
  const handle = [...targets, entry.handle ?? ""].find(
    (h) => h !== "" && handleHash(h.trim()) === entry.hash,
  );
  if (handle === undefined) {
    verified.fixed = false;
    verified.fixError = new HubcacheError(
      ErrorCode.INVALID_HANDLE,
      `Cannot download ${entry.handle ?? entry.hash} again: the cache keeps its handle redacted.`,
      {
        handle: entry.handle ?? entry.hash,
        hint: "Run hubcache verify --fix with the exact handle (credentials included).",
      },
    );
    return;
  }
  try {
    const { removeEntries } = await import("./remove.js");
    const removal = await removeEntries([entry.hash], options);
    const refused = removal.results.find((r) => r.error);
    if (refused?.error) throw refused.error;
    const { resolve } = await import("../resolve.js");
    await resolve(handle.trim(), { ...options.resolveOptions, ...options });
    verified.fixed = true;
  } catch (error) {
    verified.fixed = false;
    verified.fixError =
      error instanceof HubcacheError
        ? error
        : new HubcacheError(ErrorCode.IO, `Downloading ${entry.handle ?? entry.hash} again failed.`, {
            cause: error,
          });
  }
}
