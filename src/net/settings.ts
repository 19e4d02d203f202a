/**
 * Network settings read from an environment alone, for readers that get no resolve() options
 * (an http(s) Storage opened with `openStorage`). Same names and defaults as resolve()'s.
 */
import { type Env, envNumber } from "../config.js";
import type { NetworkSettings } from "./client.js";
import { readProxyEnv } from "./proxy.js";
import { DEFAULT_RETRY_POLICY, type RetryPolicy } from "./retry.js";
import { readTransferLimits } from "./transfer-limits.js";
import { DEFAULTS } from "../settings-table.js";

export const DEFAULT_CONNECT_TIMEOUT_MS = DEFAULTS.connectTimeoutMs;
export const DEFAULT_IDLE_TIMEOUT_MS = DEFAULTS.idleTimeoutMs;

function seconds(env: Env, name: string): number | undefined {
  const value = envNumber(env, name);
  return value === undefined ? undefined : value * 1000;
}

/** HUBCACHE_CONNECT_TIMEOUT, HUBCACHE_IDLE_TIMEOUT (s), proxies, TFHUB_DISABLE_CERT_VALIDATION, rate limits. */
export function networkSettingsFromEnv(env: Env): NetworkSettings {
  return {
    connectTimeoutMs: seconds(env, "HUBCACHE_CONNECT_TIMEOUT") ?? DEFAULT_CONNECT_TIMEOUT_MS,
    idleTimeoutMs: seconds(env, "HUBCACHE_IDLE_TIMEOUT") ?? DEFAULT_IDLE_TIMEOUT_MS,
    // Exactly as TF Hub: only the string "true" turns certificate checks off.
    insecureTls: env.TFHUB_DISABLE_CERT_VALIDATION === "true",
    proxy: readProxyEnv(env),
    limits: readTransferLimits(env),
  };
}

/** HUBCACHE_RETRIES, else the default policy. */
export function retryPolicyFromEnv(env: Env): RetryPolicy {
  const retries = envNumber(env, "HUBCACHE_RETRIES");
  return { ...DEFAULT_RETRY_POLICY, retries: Math.floor(retries ?? DEFAULT_RETRY_POLICY.retries) };
}
