/** Cache management (issue 11): see, verify, remove and cap what is cached. The CLI only formats these. */
export { type CacheEntry, type CacheListing, type EntrySort, type ListOptions, listEntries } from "./list.js";
export { type RemoveOptions, type RemoveResult, type RemovedEntry, removeEntries } from "./remove.js";
export {
  type PruneOptions,
  type PruneResult,
  type PrunedEntry,
  type PruneReason,
  pruneCache,
} from "./prune.js";
export {
  type FileProblem,
  type VerifiedEntry,
  type VerifyOptions,
  type VerifyResult,
  verifyEntries,
} from "./verify.js";
export { type CacheDirInfo, type CacheDirSource, cacheDirInfo } from "./dir.js";
export type { ManageOptions } from "./open-store.js";
export { formatAge, formatSize, parseDuration, parseSize } from "../units.js";
