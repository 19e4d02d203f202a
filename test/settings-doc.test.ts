import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import { test } from "node:test";
import { SETTINGS_DOC, renderSettingsDoc } from "../scripts/settings-doc.js";

test("docs/settings.md is generated from src/settings-table.ts and up to date (npm run docs:settings)", async () => {
  assert.equal(await fs.readFile(SETTINGS_DOC, "utf8"), await renderSettingsDoc());
});
