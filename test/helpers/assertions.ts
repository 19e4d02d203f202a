import assert from "node:assert/strict";
import type { HubcacheError } from "../../src/errors.js";

/**
 * Await `promise` and require it to reject with a HubcacheError of `code`; returns the error.
 * Checked by name, not instanceof: tests use both the built package ("hubcache") and src/.
 */
export async function expectCode(promise: Promise<unknown>, code: string): Promise<HubcacheError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(
      error instanceof Error && error.name === "HubcacheError",
      `expected a HubcacheError, got ${String(error)}`,
    );
    const coded = error as HubcacheError;
    assert.equal(coded.code, code, coded.message);
    return coded;
  }
  assert.fail(`expected ${code}, but it succeeded`);
}
