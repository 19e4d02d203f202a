/**
 * One download per model per browser: the model's Web Lock (`hubcache:<handle>`), shared by every
 * tab and worker of the origin. Where Web Locks are missing (insecure contexts, old browsers) the
 * work just runs.
 */
import { abortedError, isAbortError } from "../errors.js";
import type { BrowserEventListener } from "./events.js";

export const lockName = (handle: string): string => `hubcache:${handle}`;

export async function withModelLock<T>(
  handle: string,
  signal: AbortSignal | undefined,
  emit: BrowserEventListener,
  work: () => Promise<T>,
): Promise<T> {
  const locks = typeof navigator === "undefined" ? undefined : navigator.locks;
  if (!locks) return work();
  const name = lockName(handle);
  const first = await locks.request(name, { ifAvailable: true }, async (lock) =>
    lock ? { value: await work() } : undefined,
  );
  if (first) return first.value;
  emit({ type: "lock-wait", handle });
  try {
    return await locks.request(name, signal ? { signal } : {}, () => work());
  } catch (error) {
    if (signal?.aborted || isAbortError(error)) {
      throw abortedError(handle, `Waiting for another tab's download of ${handle}`, signal?.reason ?? error);
    }
    throw error;
  }
}
