import assert from "node:assert/strict";
import type { HubcacheError } from "../../src/errors.js";

export interface ExpectCodeOptions {
  /** Also require what every error of resolve() and load() carries: a hint and the handle. */
  described?: boolean;
}

/**
 * Await `promise` and require it to reject with a HubcacheError of `code`; returns the error.
 * Checked by name, not instanceof: tests use both the built package ("hubcache") and src/.
 */
export async function expectCode(
  promise: Promise<unknown>,
  code: string,
  options: ExpectCodeOptions = {},
): Promise<HubcacheError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(
      error instanceof Error && error.name === "HubcacheError",
      `expected a HubcacheError, got ${String(error)}`,
    );
    const coded = error as HubcacheError;
    assert.equal(coded.code, code, `expected ${code}, got ${coded.code}: ${coded.message}`);
    if (options.described) {
      assert.ok(coded.hint && coded.hint.length > 10, "every error carries a hint");
      assert.ok(coded.handle, "every error names the handle");
    }
    return coded;
  }
  assert.fail(`expected ${code}, but it succeeded`);
}
