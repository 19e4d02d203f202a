/**
 * docs/settings.md, generated from src/settings-table.ts (the one place settings and defaults are
 * written). `npm run docs:settings` rewrites the page; test/settings-doc.test.ts fails when the
 * page is out of date.
 */
import { promises as fs } from "node:fs";
import { fileURLToPath } from "node:url";
import prettier from "prettier";
import { SETTINGS, type SettingDoc } from "../src/settings-table.js";

export const SETTINGS_DOC = fileURLToPath(new URL("../docs/settings.md", import.meta.url));

const cell = (text: string | undefined): string => (text ?? "").replaceAll("|", "\\|");
const code = (text: string | undefined): string =>
  text === undefined
    ? ""
    : text
        .split(/,\s*/)
        .map((part) => {
          const [name = part, rest] = part.split(/ (?=\()/);
          return `\`${name}\`${rest === undefined ? "" : ` ${rest}`}`;
        })
        .join(", ");

function row(setting: SettingDoc): string {
  const option = setting.option === undefined ? "" : `\`${setting.option}\``;
  const flag = setting.flag === undefined ? "" : `\`${setting.flag}\``;
  return `| ${option} | ${cell(code(setting.env))} | ${flag} | ${cell(setting.default)} | ${cell(setting.meaning)} |`;
}

/** The page, formatted as `npm run format` would leave it. */
export async function renderSettingsDoc(): Promise<string> {
  const options = (await prettier.resolveConfig(SETTINGS_DOC)) ?? {};
  const text = [
    "# Settings",
    "",
    "<!-- Generated from src/settings-table.ts by `npm run docs:settings`: edit that file, not this one. -->",
    "",
    "Every setting hubcache reads, with its library option (`resolve`, `load` and `modelInfo` take them all), its",
    "environment variable, its CLI flag (`resolve`, `info` and `load` take them all) and its default. An option or",
    "flag wins over the environment; settings are read on every call, never at import. Durations in the",
    "environment are seconds, options are milliseconds.",
    "",
    "| option | environment | flag | default | meaning |",
    "| --- | --- | --- | --- | --- |",
    ...SETTINGS.map(row),
    "",
  ].join("\n");
  return prettier.format(text, { ...options, parser: "markdown" });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await fs.writeFile(SETTINGS_DOC, await renderSettingsDoc());
}
