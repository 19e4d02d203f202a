/**
 * A real headless Chromium for the browser tests: Debian's /usr/bin/chromium driven by
 * playwright-core (which never downloads a browser), and a small page server on its own origin
 * that serves a test page and the TF.js UMD bundles from node_modules.
 */
import { existsSync, promises as fs } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { type Browser, chromium } from "playwright-core";
import { packageDir } from "./fixtures.js";

export const CHROMIUM = process.env.HUBCACHE_TEST_CHROMIUM ?? "/usr/bin/chromium";

/** Why the browser tests cannot run here, or false. */
export function browserSkip(): string | false {
  return existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed (apt-get install chromium)`;
}

export async function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
}

/** The TF.js bundles a page needs for graph models on the cpu backend, by URL path. */
export function tfjsBundles(): Record<string, string> {
  return {
    "/tf-core.min.js": path.join(packageDir("@tensorflow/tfjs-core"), "dist", "tf-core.min.js"),
    "/tf-backend-cpu.min.js": path.join(
      packageDir("@tensorflow/tfjs-backend-cpu"),
      "dist",
      "tf-backend-cpu.min.js",
    ),
    "/tf-converter.min.js": path.join(
      packageDir("@tensorflow/tfjs-converter"),
      "dist",
      "tf-converter.min.js",
    ),
  };
}

export interface PageServer {
  origin: string;
  close(): Promise<void>;
}

/** Serve `pages` (path → HTML) and `files` (path → file on disk) on 127.0.0.1, a port of its own. */
export async function startPageServer(
  pages: Record<string, string>,
  files: Record<string, string>,
): Promise<PageServer> {
  const server = http.createServer((req, res) => {
    const pathname = new URL(req.url ?? "/", "http://x").pathname;
    const page = pages[pathname];
    if (page !== undefined) {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(page);
      return;
    }
    const file = files[pathname];
    if (file === undefined) {
      res.writeHead(404).end();
      return;
    }
    void fs.readFile(file).then(
      (bytes) => res.writeHead(200, { "content-type": "text/javascript" }).end(bytes),
      () => res.writeHead(500).end(),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
