/**
 * A static file server on 127.0.0.1 with HEAD and Range support (or, on request, without Range, or
 * refusing HEAD as presigned GET URLs do, or refusing some paths altogether).
 */
import { createReadStream, promises as fs } from "node:fs";
import type http from "node:http";
import path from "node:path";
import { type RequestRecord, startLocalServer } from "./local-server.js";

export interface StaticServer {
  origin: string;
  /** Every request so far. */
  requests: RequestRecord[];
  close(): Promise<void>;
}

export interface StaticServerOptions {
  /** Answer Range requests (default true). */
  ranges?: boolean;
  /** Answer every HEAD with this status, as S3 and GCS do for a URL presigned for GET (403). */
  headStatus?: number;
  /** Paths (of the URL) answered with 403 for every method: access really refused. */
  forbidden?: (pathname: string) => boolean;
}

export async function startStaticServer(
  root: string,
  options: StaticServerOptions = {},
): Promise<StaticServer> {
  const ranges = options.ranges ?? true;
  const serve = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<unknown> => {
    const url = new URL(req.url ?? "/", "http://x");
    const file = path.join(root, ...decodeURIComponent(url.pathname).split("/").filter(Boolean));
    if (!file.startsWith(root) || options.forbidden?.(url.pathname)) {
      return res
        .writeHead(403, { "content-type": "application/xml" })
        .end("<Error><Code>AccessDenied</Code></Error>");
    }
    if (req.method === "HEAD" && options.headStatus !== undefined) {
      return res.writeHead(options.headStatus).end();
    }
    const stat = await fs.stat(file).catch(() => undefined);
    if (!stat?.isFile()) {
      return res.writeHead(404, { "content-type": "text/html" }).end("<html>not found</html>");
    }
    const headers = {
      "content-type": "application/octet-stream",
      "last-modified": stat.mtime.toUTCString(),
      etag: `"${stat.size}-${stat.mtimeMs}"`,
    };
    const m = ranges ? /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "") : null;
    if (m) {
      const start = Number(m[1]);
      const end = Math.min(m[2] ? Number(m[2]) : stat.size - 1, stat.size - 1);
      if (start >= stat.size) return res.writeHead(416, { "content-range": `bytes */${stat.size}` }).end();
      res.writeHead(206, {
        ...headers,
        "content-length": end - start + 1,
        "content-range": `bytes ${start}-${end}/${stat.size}`,
      });
      if (req.method === "HEAD") return res.end();
      return createReadStream(file, { start, end }).pipe(res);
    }
    res.writeHead(200, { ...headers, "content-length": stat.size });
    if (req.method === "HEAD") return res.end();
    return createReadStream(file).pipe(res);
  };
  const local = await startLocalServer(async (req, res) => {
    await serve(req, res);
  });
  return { origin: local.origin, requests: local.requests, close: () => local.close() };
}
