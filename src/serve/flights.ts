/**
 * The mirror's single flight: however many requests ask for a model, one resolve runs per handle
 * (and the cache's lock makes it one download across server processes on a cache dir). It runs
 * under the server's lifetime, never a request's, so a client going away cancels nothing. While a
 * cold http archive downloads, its received bytes are teed into a spool (spool.ts) that archive
 * requests follow; one spool per download attempt, so a restart from byte 0 cuts the readers of
 * the old one.
 */
import { pipeline } from "node:stream";
import { pythonTempDir } from "../config.js";
import { ErrorCode, HubcacheError } from "../errors.js";
import type { ModelFormat } from "../handle.js";
import { resolveRouted } from "../resolve.js";
import { ARCHIVE_TAP, type ArchiveTap, type ResolveOptions, type TappedOptions } from "../settings.js";
import type { RequestRoute } from "../net/route.js";
import { Spool, type SpoolReader } from "./spool.js";

/** At most `limit` tasks at once; the rest wait in order. */
export class Limiter {
  private active = 0;
  private readonly queue: (() => void)[] = [];
  constructor(private readonly limit: number) {}
  async run<T>(task: () => Promise<T>): Promise<T> {
    // A finished task hands its slot straight to the next in line, so none can slip in between.
    if (this.active >= this.limit) await new Promise<void>((go) => this.queue.push(go));
    else this.active++;
    try {
      return await task();
    } finally {
      const next = this.queue.shift();
      if (next) next();
      else this.active--;
    }
  }
}

export interface FlightsOptions {
  resolveOptions: ResolveOptions;
  route: RequestRoute;
  /** The server's lifetime: aborting it cancels every download. */
  signal: AbortSignal;
  /** Most models downloaded from upstream at once; cache hits are never queued. */
  maxDownloads: number;
}

/** One model being made sure of: its outcome, and the spool of its download while one runs. */
export class Flight {
  readonly done: Promise<string>;
  private spool: Spool | undefined;
  private settled = false;
  private wake: (() => void)[] = [];

  constructor(
    run: (tap: ArchiveTap) => Promise<string>,
    private readonly spoolDir: string,
  ) {
    this.done = run((download) => this.tee(download));
    this.done
      .then(
        () => this.spool?.publish(),
        (error: unknown) => this.spool?.fail(error),
      )
      .finally(() => {
        this.settled = true;
        this.spool?.release();
        this.notify();
      })
      .catch(() => undefined);
  }

  /**
   * A reader of the download's spool from byte 0, as soon as one is running; undefined when the
   * flight settles without one (a hit, another process downloaded it, or it failed).
   */
  async follow(): Promise<SpoolReader | undefined> {
    for (;;) {
      const reader = this.spool?.open();
      if (reader) return reader;
      if (this.settled) return undefined;
      await new Promise<void>((resolve) => this.wake.push(resolve));
    }
  }

  private tee(download: Parameters<ArchiveTap>[0]): ReturnType<ArchiveTap> {
    if (this.spool) {
      this.spool.fail(new Error("the download starts over from byte 0"));
      this.spool.release();
    }
    const spool = new Spool(this.spoolDir, download.contentLength);
    this.spool = spool;
    this.notify();
    // Errors travel both ways: a broken body fails the extractor, a failed extractor stops the body.
    return pipeline(download.stream, spool.tee(), () => undefined);
  }

  private notify(): void {
    const waiting = this.wake;
    this.wake = [];
    for (const resolve of waiting) resolve();
  }
}

export class ModelFlights {
  private readonly flights = new Map<string, Flight>();
  private readonly limiter: Limiter;

  constructor(private readonly options: FlightsOptions) {
    this.limiter = new Limiter(options.maxDownloads);
  }

  /** The model's flight: the running one, or a new one. */
  ensure(handle: string, modelFormat: ModelFormat): Flight {
    const running = this.flights.get(handle);
    if (running) return running;
    const { resolveOptions, route, signal } = this.options;
    const work = (tap: ArchiveTap, offline: boolean | undefined) => (): Promise<string> => {
      const options: TappedOptions = {
        ...resolveOptions,
        modelFormat,
        loadFormat: "COMPRESSED",
        offline,
        // Never a client's: one client going away must not cancel the download for the others.
        signal,
        [ARCHIVE_TAP]: tap,
      };
      return resolveRouted(handle, options, route);
    };
    // A hit (in a local cache or a bucket alike) is answered at once; only a download waits its turn.
    const hitOrDownload = (tap: ArchiveTap): Promise<string> =>
      work(tap, true)().catch((error: unknown) => {
        if (!(error instanceof HubcacheError && error.code === ErrorCode.OFFLINE)) throw error;
        return this.limiter.run(work(tap, resolveOptions.offline));
      });
    const flight = new Flight(
      (tap) => hitOrDownload(tap).finally(() => this.flights.delete(handle)),
      pythonTempDir(resolveOptions.env ?? process.env),
    );
    this.flights.set(handle, flight);
    return flight;
  }

  /** Every running flight settled (or failed). */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.flights.values()].map((flight) => flight.done));
  }
}
