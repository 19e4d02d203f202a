/** The "Environment:" part of `hubcache resolve --help`, written from src/settings-table.ts. */
import { SETTINGS } from "../settings-table.js";

const WIDTH = 100;
const INDENT = "                             "; // 29 columns: where meanings start

/** Markdown (backticks) as plain terminal text. */
function plain(text: string): string {
  return text.replaceAll("`", "");
}

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/)) {
    if (line !== "" && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line === "" ? word : `${line} ${word}`;
  }
  if (line !== "") lines.push(line);
  return lines;
}

/** Every environment variable hubcache reads: name, meaning, default (and the flag that wins over it). */
export function environmentHelp(): string {
  const out: string[] = [];
  for (const setting of SETTINGS) {
    if (setting.env === undefined) continue;
    const name = `  ${setting.env}`;
    const flag = setting.flag === undefined ? "" : `; ${setting.flag.split(" ")[0]} wins`;
    const text = wrap(
      `${plain(setting.meaning)} (default: ${plain(setting.default)}${flag})`,
      WIDTH - INDENT.length,
    );
    if (name.length < INDENT.length - 1) {
      out.push(`${name.padEnd(INDENT.length)}${text[0] ?? ""}`);
      out.push(...text.slice(1).map((line) => INDENT + line));
    } else {
      out.push(name, ...text.map((line) => INDENT + line));
    }
  }
  return out.join("\n");
}
