/**
 * Progress on stderr: a live bar (cli-progress) on a terminal, plain throttled lines otherwise
 * (when TFHUB_DOWNLOAD_PROGRESS asks for progress without a terminal).
 */
import cliProgress from "cli-progress";
import type { HubcacheEvent } from "../events.js";
import { formatBytes, printable } from "./output.js";

export interface ProgressReporter {
  onEvent(event: HubcacheEvent): void;
  stop(): void;
}

export function createProgressReporter(stream: NodeJS.WriteStream, interactive: boolean): ProgressReporter {
  return interactive ? barReporter(stream) : lineReporter(stream);
}

function label(handle: string): string {
  const shown = printable(handle);
  return shown.length > 48 ? `…${shown.slice(-47)}` : shown;
}

function barReporter(stream: NodeJS.WriteStream): ProgressReporter {
  const multi = new cliProgress.MultiBar(
    {
      stream,
      clearOnComplete: false,
      hideCursor: true,
      format: " {bar} {percentage}% | {done} of {total} | {handle}",
      formatValue: (value, _options, type) =>
        type === "value" || type === "total" ? formatBytes(value) : String(value),
    },
    cliProgress.Presets.shades_classic,
  );
  const bars = new Map<string, cliProgress.SingleBar>();
  return {
    onEvent(event) {
      if (event.type === "progress") {
        const total = event.totalBytes ?? Math.max(event.downloadedBytes, 1);
        let bar = bars.get(event.handle);
        if (!bar) {
          bar = multi.create(total, 0, {
            handle: label(event.handle),
            done: "0 B",
            total: formatBytes(total),
          });
          bars.set(event.handle, bar);
        }
        bar.setTotal(total);
        bar.update(event.downloadedBytes, {
          handle: label(event.handle),
          done: formatBytes(event.downloadedBytes),
          total: event.totalBytes === undefined ? "?" : formatBytes(event.totalBytes),
        });
      } else {
        // Lock waits, takeovers, retries, warnings: a line above the bars.
        // Before the first bar, MultiBar is not drawing and would hold the line back: write it.
        const text = describeEvent(event);
        if (text && bars.size === 0) stream.write(`${text}\n`);
        else if (text) multi.log(`${text}\n`);
      }
    },
    stop: () => multi.stop(),
  };
}

function lineReporter(stream: NodeJS.WriteStream): ProgressReporter {
  const lastLine = new Map<string, number>();
  return {
    onEvent(event) {
      if (event.type === "progress") {
        const now = Date.now();
        if (!event.done && now - (lastLine.get(event.handle) ?? 0) < 1000) return;
        lastLine.set(event.handle, now);
        const total = event.totalBytes === undefined ? "" : ` of ${formatBytes(event.totalBytes)}`;
        const verb = event.done ? "Downloaded" : "Downloading";
        stream.write(
          `${verb} ${printable(event.handle)}: ${formatBytes(event.downloadedBytes)}${total}, ${formatBytes(event.extractedBytes)} extracted\n`,
        );
      } else {
        const text = describeEvent(event);
        if (text) stream.write(`${text}\n`);
      }
    },
    stop: () => undefined,
  };
}

/** Events worth a line for a person (not hits or progress), control characters escaped. */
export function describeEvent(event: HubcacheEvent): string | undefined {
  const text = eventText(event);
  return text === undefined ? undefined : printable(text);
}

function eventText(event: HubcacheEvent): string | undefined {
  switch (event.type) {
    case "lock-wait":
      return `waiting: ${event.handle} is being downloaded by ${event.holder} (${Math.round(event.waitedMs / 1000)} s; taken over after ${seconds(event.staleAfterMs)} without progress)`;
    case "lock-takeover":
      return `took over the download of ${event.handle} from ${event.holder} (${event.reason === "holder-dead" ? "holder is gone" : `no progress for ${seconds(event.staleAfterMs)}`})`;
    case "retry":
      return retryText(event);
    case "warning":
      return `warning: ${event.message}`;
    case "cache-incomplete":
      return `${event.handle}: cached copy is incomplete (${event.reason}); downloading again`;
    default:
      return undefined;
  }
}

/**
 * `retry 2 of 5: <handle> in 3.2 s (<reason>)`, and what happens when the retries run out. The
 * total comes from the event's optional `retries` field, when the library sends it.
 */
function retryText(event: Extract<HubcacheEvent, { type: "retry" }>): string {
  const total = (event as { retries?: unknown }).retries;
  const known = typeof total === "number" && Number.isFinite(total);
  const count = known ? `retry ${event.attempt} of ${total}` : `retry ${event.attempt}`;
  const left = known ? total - event.attempt : 0;
  const after = !known
    ? "HUBCACHE_RETRIES sets how many retries are made"
    : left <= 0
      ? "last retry: hubcache gives up if it fails"
      : `${left} more ${left === 1 ? "retry" : "retries"} before hubcache gives up`;
  return `${count}: ${event.handle} in ${delayText(event.delayMs)} (${event.reason}); ${after}`;
}

function delayText(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : seconds(ms);
}

function seconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(1))} s`;
}
