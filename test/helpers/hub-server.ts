/**
 * A local model host on 127.0.0.1 that speaks TF Hub's hosting protocol the way tfhub.dev and
 * kaggle.com do: `?tf-hub-format=compressed` (or `?tfjs-format=compressed`) answers 302 to a
 * signed "storage" URL that serves the archive; a plain GET answers an HTML page;
 * `?tf-hub-format=uncompressed` answers 303 with the model's location in the body.
 * Models registered with a `dir` are also served file by file, as TF.js reads them:
 * `<model>/model.json?tfjs-format=file` (and each weight file with the same query) answers 302 to a
 * signed storage URL for that one file; `/static<model>/<file>` serves the files plainly (a location
 * for UNCOMPRESSED mode).
 */
import { createReadStream, promises as fs } from "node:fs";
import type http from "node:http";
import path from "node:path";
import { type RequestRecord, startLocalServer } from "./local-server.js";

export type { RequestRecord } from "./local-server.js";

export interface HostedModel {
  /** The archive's bytes, or a file to stream them from. */
  archive: Buffer | { file: string; size: number };
  /** For UNCOMPRESSED mode: the body of the 303 answer (without it, the host ignores the query, like a static server). */
  uncompressedLocation?: string | undefined;
  /** The model's folder, served file by file (`?tfjs-format=file`, `/static/...`). */
  dir?: string;
  /** A different archive for `?tfjs-format=compressed` (a host serving both formats). */
  tfjsArchive?: Buffer;
}

export interface HubServer {
  origin: string;
  /** The handle (URL) of a model path such as "/google/movenet/1". */
  handle(modelPath: string): string;
  add(modelPath: string, model: HostedModel): void;
  requests: RequestRecord[];
  /** Requests that asked for the archive bytes (the storage hop). */
  downloads(): RequestRecord[];
  /** Limit the storage hop to this many bytes per second (0: unlimited). */
  throttleBytesPerSecond: number;
  /** Hold the storage hop's answers (headers and bytes) until the returned function is called. */
  holdDownloads(): () => void;
  /**
   * Pause every storage answer from now on after `bytes` body bytes (headers sent), until `resume()`
   * (the rest follows) or `cut()` (the connection is destroyed there). `reached` resolves when one
   * answer is paused.
   */
  pauseDownloadsAfter(bytes: number): MidBodyPause;
  close(): Promise<void>;
}

export interface MidBodyPause {
  reached: Promise<void>;
  resume(): void;
  cut(): void;
}

export interface HubServerOptions {
  /** Answer pages of other origins (a browser test): CORS headers on every answer, preflights. */
  cors?: boolean;
}

export async function startHubServer(options: HubServerOptions = {}): Promise<HubServer> {
  const models = new Map<string, HostedModel>();
  const state: {
    throttle: number;
    gate: Promise<void> | undefined;
    pause: { after: number; arrived: () => void; go: Promise<"resume" | "cut"> } | undefined;
  } = { throttle: 0, gate: undefined, pause: undefined };

  const answer = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    if (options.cors) {
      res.setHeader("access-control-allow-origin", "*");
      res.setHeader("access-control-expose-headers", "ETag, Content-Length");
      if (req.method === "OPTIONS") {
        res.writeHead(204, { "access-control-allow-headers": "Authorization, Range" }).end();
        return;
      }
    }
    if (url.pathname.startsWith("/storage/")) {
      if (state.gate) void state.gate.then(() => serveStorage(url, res));
      else serveStorage(url, res);
      return;
    }
    if (url.pathname.startsWith("/file-storage/") || url.pathname.startsWith("/static/")) {
      const signed = url.pathname.startsWith("/file-storage/");
      if (signed && !url.searchParams.get("X-Goog-Signature")) {
        res
          .writeHead(403, { "content-type": "application/xml" })
          .end("<Error><Code>AccessDenied</Code></Error>");
        return;
      }
      void serveFile(url.pathname.slice(url.pathname.indexOf("/", 1)), res);
      return;
    }
    if (url.searchParams.get("tfjs-format") === "file") {
      const cut = url.pathname.lastIndexOf("/");
      const owner = models.get(url.pathname.slice(0, cut));
      if (owner?.dir) {
        const signed = `/file-storage${url.pathname}?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=svc%40test&X-Goog-Signature=cafef00d`;
        res.writeHead(302, { location: signed }).end();
        return;
      }
    }
    const model = models.get(url.pathname.replace(/\/+$/, ""));
    if (!model) {
      res.writeHead(404, { "content-type": "text/html" }).end("<html><body>Not found</body></html>");
      return;
    }
    const formats = [...url.searchParams.getAll("tf-hub-format"), ...url.searchParams.getAll("tfjs-format")];
    if (formats.includes("compressed")) {
      const tfjs = url.searchParams.getAll("tfjs-format").includes("compressed") && model.tfjsArchive;
      const signed = `/storage${url.pathname}.tar.gz?${tfjs ? "format=tfjs&" : ""}X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=svc%40test&X-Goog-Expires=259200&X-Goog-Signature=deadbeef`;
      res.writeHead(302, { location: signed }).end();
      return;
    }
    if (formats.includes("uncompressed") && model.uncompressedLocation !== undefined) {
      res.writeHead(303, { "content-type": "text/plain" }).end(model.uncompressedLocation);
      return;
    }
    res
      .writeHead(200, { "content-type": "text/html; charset=utf-8" })
      .end("<!DOCTYPE html><html><head><title>Model</title></head></html>");
  };

  /** One file of a model registered with a `dir`; `filePath` is `<model path>/<file>`. */
  async function serveFile(filePath: string, res: http.ServerResponse): Promise<void> {
    const decoded = decodeURIComponent(filePath);
    const cut = decoded.lastIndexOf("/");
    const model = models.get(decoded.slice(0, cut));
    const name = decoded.slice(cut + 1);
    const notFound = (): void => {
      res.writeHead(404, { "content-type": "application/xml" }).end("<Error><Code>NoSuchKey</Code></Error>");
    };
    if (!model?.dir || name === "" || name === "..") return notFound();
    try {
      const bytes = await fs.readFile(path.join(model.dir, name));
      res.writeHead(200, {
        "content-type": "application/octet-stream",
        "content-length": String(bytes.length),
      });
      res.end(bytes);
    } catch {
      notFound();
    }
  }

  function serveStorage(url: URL, res: http.ServerResponse): void {
    const modelPath = url.pathname.slice("/storage".length).replace(/\.tar\.gz$/, "");
    const model = models.get(modelPath);
    if (!model || !url.searchParams.get("X-Goog-Signature")) {
      res
        .writeHead(403, { "content-type": "application/xml" })
        .end("<Error><Code>SignatureDoesNotMatch</Code></Error>");
      return;
    }
    const archive =
      url.searchParams.get("format") === "tfjs" && model.tfjsArchive ? model.tfjsArchive : model.archive;
    const size = Buffer.isBuffer(archive) ? archive.length : archive.size;
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": String(size) });
    const source = Buffer.isBuffer(archive)
      ? [archive]
      : createReadStream(archive.file, { highWaterMark: 1 << 20 });
    void pump(state.pause ? pausing(source, state.pause, res) : source, res);
  }

  /** The bytes of `source`, stopping after `pause.after` of them until the test resumes or cuts. */
  async function* pausing(
    source: AsyncIterable<Buffer> | Buffer[],
    pause: NonNullable<typeof state.pause>,
    res: http.ServerResponse,
  ): AsyncGenerator<Buffer> {
    let sent = 0;
    let paused = false;
    for await (const chunk of source) {
      if (paused || sent + chunk.length <= pause.after) {
        sent += chunk.length;
        yield chunk;
        continue;
      }
      yield chunk.subarray(0, pause.after - sent);
      paused = true;
      pause.arrived();
      if ((await pause.go) === "cut") {
        res.destroy();
        return;
      }
      yield chunk.subarray(pause.after - sent);
    }
  }

  async function pump(source: AsyncIterable<Buffer> | Buffer[], res: http.ServerResponse): Promise<void> {
    try {
      for await (const chunk of source) {
        if (state.throttle > 0) {
          for (let offset = 0; offset < chunk.length; offset += 16384) {
            const piece = chunk.subarray(offset, offset + 16384);
            if (!res.write(piece)) await new Promise((r) => res.once("drain", r));
            // The throttle may be lifted mid-stream: then the rest goes at full speed.
            if (state.throttle > 0) {
              await new Promise((r) => setTimeout(r, (piece.length / state.throttle) * 1000));
            }
            if (res.destroyed) return;
          }
        } else if (!res.write(chunk)) {
          await new Promise((r) => res.once("drain", r));
        }
        if (res.destroyed) return;
      }
      res.end();
    } catch {
      res.destroy();
    }
  }

  const local = await startLocalServer(answer);
  return {
    origin: local.origin,
    handle: (modelPath) => local.url(modelPath),
    add: (modelPath, model) => models.set(modelPath, model),
    requests: local.requests,
    downloads: () => local.requests.filter((r) => r.path.startsWith("/storage/")),
    get throttleBytesPerSecond() {
      return state.throttle;
    },
    set throttleBytesPerSecond(value: number) {
      state.throttle = value;
    },
    holdDownloads() {
      let open = (): void => undefined;
      state.gate = new Promise<void>((resolve) => (open = resolve));
      return () => {
        state.gate = undefined;
        open();
      };
    },
    pauseDownloadsAfter(bytes) {
      let arrived = (): void => undefined;
      let go = (_how: "resume" | "cut"): void => undefined;
      const reached = new Promise<void>((resolve) => (arrived = resolve));
      const decided = new Promise<"resume" | "cut">((resolve) => (go = resolve));
      state.pause = { after: bytes, arrived, go: decided };
      return {
        reached,
        resume: () => {
          state.pause = undefined;
          go("resume");
        },
        cut: () => {
          state.pause = undefined;
          go("cut");
        },
      };
    },
    close: () => local.close(),
  };
}
