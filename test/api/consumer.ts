/**
 * A consumer of the published package, type-checked by `npm test` (tsconfig.json includes test/):
 * it fails to compile when the public API changes by accident. Change it together with src/index.ts
 * when the API changes on purpose. The runtime list of exports is pinned by test/api-surface.test.ts.
 */
import type * as hubcache from "hubcache";
import type {
  ErrorCode,
  HubcacheEvent,
  LoadOptions,
  ModelInfo,
  ParsedHandle,
  ProgressEvent,
  ResolveOptions,
  Storage,
  StorageOptions,
} from "hubcache";

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
type Expect<T extends true> = T;

/** The values the package exports, and nothing else. */
export type Values = Expect<
  Equal<
    keyof typeof hubcache,
    | "resolve"
    | "load"
    | "modelInfo"
    | "cacheIOHandler"
    | "sourceIOHandler"
    | "hubFetch"
    | "dirSource"
    | "httpSource"
    | "storageSource"
    | "openStorage"
    | "parseHandle"
    | "handleHash"
    | "HubcacheError"
    | "ErrorCode"
    | "isHubcacheError"
    | "redactUrl"
    | "VERSION"
    | "listEntries"
    | "removeEntries"
    | "pruneCache"
    | "verifyEntries"
    | "cacheDirInfo"
    | "parseSize"
    | "parseDuration"
  >
>;

export type Resolve = Expect<
  Equal<typeof hubcache.resolve, (handle: string, options?: ResolveOptions) => Promise<string>>
>;
export type ResolveOptionNames = Expect<
  Equal<
    keyof ResolveOptions,
    | "cacheDir"
    | "sharedCache"
    | "storage"
    | "loadFormat"
    | "modelFormat"
    | "offline"
    | "lockTimeoutMs"
    | "maxExtractBytes"
    | "maxFiles"
    | "minFreeBytes"
    | "connectTimeoutMs"
    | "idleTimeoutMs"
    | "retries"
    | "retryDelayMs"
    | "minSpeedBytesPerSec"
    | "minSpeedWindowMs"
    | "deadlineMs"
    | "maxCacheBytes"
    | "touchIntervalMs"
    | "onEvent"
    | "onProgress"
    | "fetch"
    | "signal"
    | "env"
    | "flags"
    | "mirror"
    | "mirrorToken"
  >
>;
export type LoadTakesResolveOptions = Expect<
  Equal<Omit<LoadOptions, keyof ResolveOptions> extends object ? true : false, true>
>;
export type ModelInfoOf = Expect<Equal<ReturnType<typeof hubcache.modelInfo>, Promise<ModelInfo>>>;
export type OpenStorage = Expect<
  Equal<typeof hubcache.openStorage, (location: string, options?: StorageOptions) => Promise<Storage>>
>;
export type ParseHandle = Expect<Equal<ReturnType<typeof hubcache.parseHandle>, ParsedHandle>>;
export type HandleHash = Expect<Equal<typeof hubcache.handleHash, (handle: string) => string>>;
export type Codes = Expect<Equal<ErrorCode, (typeof hubcache.ErrorCode)[keyof typeof hubcache.ErrorCode]>>;
export type ErrorFields = Expect<
  Equal<
    Pick<hubcache.HubcacheError, "code" | "handle" | "hint" | "status">,
    {
      readonly code: ErrorCode;
      readonly handle: string | undefined;
      readonly hint: string | undefined;
      readonly status: number | undefined;
    }
  >
>;
export type Events = Expect<Equal<Extract<HubcacheEvent, { type: "progress" }>, ProgressEvent>>;
