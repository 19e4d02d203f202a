/** The one way tests wait for something that should happen soon. */
import { setTimeout as sleep } from "node:timers/promises";

/**
 * Poll `condition` every 25 ms until it holds; throws after `timeoutMs` (a generous bound for a
 * step that should come soon, not a timing assertion).
 */
export async function until(
  condition: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 60_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(25);
  }
}
