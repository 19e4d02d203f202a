/**
 * A small, protocol-faithful server for the Google Cloud Storage JSON API (node:http, in memory),
 * written for this project because no GCS emulator installs offline here except firebase-tools'
 * (312 MB, and it ignores preconditions and truncates chunked resumable uploads). Verified with
 * @google-cloud/storage 7.22 through STORAGE_EMULATOR_HOST or apiEndpoint:
 * - buckets: insert, get, list, delete;
 * - objects: get (metadata, or alt=media with Range), list (prefix, delimiter, pageToken,
 *   maxResults, startOffset/endOffset, includeTrailingDelimiter), delete, copyTo, rewriteTo, patch;
 * - uploads: uploadType=media | multipart | resumable (single PUT, chunked Content-Range, status);
 * - preconditions ifGenerationMatch (0: must not exist), ifGenerationNotMatch,
 *   ifMetagenerationMatch, ifMetagenerationNotMatch, answering 412 conditionNotMet;
 * - crc32c and md5 computed; X-Goog-Hash and metadata hashes checked on upload.
 * Paths work with and without /storage/v1 (STORAGE_EMULATOR_HOST makes the SDK drop it).
 * Keep objects small: everything is held in RAM.
 */
import crypto from "node:crypto";
import type http from "node:http";
import { type RequestRecord, createLocalServer } from "./local-server.js";

interface StoredObject {
  bucket: string;
  name: string;
  data: Buffer;
  generation: number;
  metageneration: number;
  contentType: string;
  metadata: Record<string, string> | undefined;
  created: string;
  updated: string;
  md5: string;
  crc32c: string;
  extra: Record<string, unknown>;
}

interface ObjectMeta {
  name?: string | undefined;
  contentType?: string | undefined;
  metadata?: Record<string, string | null> | null | undefined;
  md5Hash?: string | undefined;
  crc32c?: string | undefined;
  [key: string]: unknown;
}

interface Session {
  bucket: string;
  name: string;
  meta: ObjectMeta;
  query: URLSearchParams;
  chunks: Buffer[];
  received: number;
  done?: StoredObject;
}

interface Bucket {
  name: string;
  created: string;
  objects: Map<string, StoredObject>;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly reason = "invalid",
  ) {
    super(message);
  }
}

// CRC32C (Castagnoli), slicing-by-8.
const TABLES = Array.from({ length: 8 }, () => new Uint32Array(256));
const T0 = TABLES[0] as Uint32Array;
for (let i = 0; i < 256; i++) {
  let c = i;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
  T0[i] = c >>> 0;
}
for (let i = 0; i < 256; i++) {
  for (let t = 1; t < 8; t++) {
    const previous = TABLES[t - 1] as Uint32Array;
    (TABLES[t] as Uint32Array)[i] =
      ((previous[i] as number) >>> 8) ^ (T0[(previous[i] as number) & 0xff] as number);
  }
}

export function crc32c(buf: Buffer, initial = 0): number {
  const t = TABLES as [
    Uint32Array,
    Uint32Array,
    Uint32Array,
    Uint32Array,
    Uint32Array,
    Uint32Array,
    Uint32Array,
    Uint32Array,
  ];
  let crc = ~initial >>> 0;
  let i = 0;
  const n = buf.length - 8;
  const b = (j: number): number => buf[j] as number;
  for (; i <= n; i += 8) {
    const a = (b(i) | (b(i + 1) << 8) | (b(i + 2) << 16) | (b(i + 3) << 24)) ^ crc;
    crc =
      (t[7][a & 0xff] as number) ^
      (t[6][(a >>> 8) & 0xff] as number) ^
      (t[5][(a >>> 16) & 0xff] as number) ^
      (t[4][a >>> 24] as number) ^
      (t[3][b(i + 4)] as number) ^
      (t[2][b(i + 5)] as number) ^
      (t[1][b(i + 6)] as number) ^
      (t[0][b(i + 7)] as number);
  }
  for (; i < buf.length; i++) crc = (t[0][(crc ^ b(i)) & 0xff] as number) ^ (crc >>> 8);
  return ~crc >>> 0;
}

function base64Crc32c(data: Buffer): string {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(crc32c(data));
  return out.toString("base64");
}

export interface GcsFakeOptions {
  port?: number;
  host?: string;
  buckets?: string[];
  log?: boolean;
}

export interface GcsFake {
  server: http.Server;
  buckets: Map<string, Bucket>;
  addBucket(name: string): void;
  /** Store an object directly (test setup). */
  putObject(bucket: string, name: string, data: Buffer | string): void;
  /** Every request seen. */
  requests: RequestRecord[];
  listen(): Promise<string>;
  close(): Promise<void>;
}

export function createGcsFake(options: GcsFakeOptions = {}): GcsFake {
  const buckets = new Map<string, Bucket>();
  const sessions = new Map<string, Session>();
  let generationCounter = Date.now() * 1000;
  let base = "";
  const addBucket = (name: string): void => {
    if (!buckets.has(name)) {
      buckets.set(name, { name, created: new Date().toISOString(), objects: new Map() });
    }
  };
  for (const name of options.buckets ?? []) addBucket(name);

  const bucketOf = (name: string): Bucket => {
    const bucket = buckets.get(name);
    if (!bucket) throw new HttpError(404, "The specified bucket does not exist.", "notFound");
    return bucket;
  };
  const bucketJson = (b: Bucket): Record<string, unknown> => ({
    kind: "storage#bucket",
    id: b.name,
    name: b.name,
    selfLink: `${base}/storage/v1/b/${b.name}`,
    projectNumber: "0",
    metageneration: "1",
    location: "US",
    storageClass: "STANDARD",
    etag: "CAE=",
    timeCreated: b.created,
    updated: b.created,
  });
  const objectJson = (o: StoredObject): Record<string, unknown> => ({
    kind: "storage#object",
    id: `${o.bucket}/${o.name}/${o.generation}`,
    selfLink: `${base}/storage/v1/b/${o.bucket}/o/${encodeURIComponent(o.name)}`,
    mediaLink: `${base}/download/storage/v1/b/${o.bucket}/o/${encodeURIComponent(o.name)}?generation=${o.generation}&alt=media`,
    name: o.name,
    bucket: o.bucket,
    generation: String(o.generation),
    metageneration: String(o.metageneration),
    contentType: o.contentType,
    storageClass: "STANDARD",
    size: String(o.data.length),
    md5Hash: o.md5,
    crc32c: o.crc32c,
    etag: Buffer.from(`${o.generation}/${o.metageneration}`).toString("base64"),
    timeCreated: o.created,
    updated: o.updated,
    timeStorageClassUpdated: o.created,
    ...o.extra,
    ...(o.metadata ? { metadata: o.metadata } : {}),
  });

  /** Preconditions; ifGenerationMatch=0 means "the object must not exist". */
  function checkPreconditions(q: URLSearchParams, current: StoredObject | undefined, prefix = "if"): void {
    const g = q.get(`${prefix}GenerationMatch`);
    const gn = q.get(`${prefix}GenerationNotMatch`);
    const m = q.get(`${prefix}MetagenerationMatch`);
    const mn = q.get(`${prefix}MetagenerationNotMatch`);
    const currentGeneration = current ? current.generation : 0;
    const fail = (): never => {
      throw new HttpError(
        412,
        "At least one of the pre-conditions you specified did not hold.",
        "conditionNotMet",
      );
    };
    if (g !== null && Number(g) !== currentGeneration) fail();
    if (gn !== null && Number(gn) === currentGeneration) fail();
    if (m !== null && (!current || Number(m) !== current.metageneration)) fail();
    if (mn !== null && current && Number(mn) === current.metageneration) fail();
  }

  function getObject(bucket: string, name: string, q?: URLSearchParams): StoredObject {
    const o = bucketOf(bucket).objects.get(name);
    const generation = q?.get("generation");
    if (!o || (generation && Number(generation) !== o.generation)) {
      throw new HttpError(404, `No such object: ${bucket}/${name}`, "notFound");
    }
    return o;
  }

  function store(
    bucket: string,
    name: string,
    data: Buffer,
    meta: ObjectMeta,
    q: URLSearchParams,
    hashHeader?: string,
  ): StoredObject {
    if (!name) throw new HttpError(400, "Required parameter: name", "required");
    const b = bucketOf(bucket);
    checkPreconditions(q, b.objects.get(name));
    const md5 = crypto.createHash("md5").update(data).digest("base64");
    const crc = base64Crc32c(data);
    for (const part of (hashHeader ?? "").split(",")) {
      const i = part.indexOf("=");
      if (i < 0) continue;
      const k = part.slice(0, i).trim();
      const v = part.slice(i + 1).trim();
      if ((k === "crc32c" && v !== crc) || (k === "md5" && v !== md5)) {
        throw new HttpError(
          400,
          `Provided ${k} "${v}" doesn't match calculated "${k === "md5" ? md5 : crc}".`,
        );
      }
    }
    if (meta.md5Hash && meta.md5Hash !== md5) {
      throw new HttpError(400, "Provided MD5 hash does not match calculated MD5 hash.");
    }
    if (meta.crc32c && meta.crc32c !== crc) {
      throw new HttpError(400, "Provided CRC32C does not match calculated CRC32C.");
    }
    const now = new Date().toISOString();
    const extra: Record<string, unknown> = {};
    for (const k of ["cacheControl", "contentEncoding", "contentDisposition", "contentLanguage"]) {
      if (meta[k] !== undefined) extra[k] = meta[k];
    }
    const o: StoredObject = {
      bucket,
      name,
      data,
      generation: ++generationCounter,
      metageneration: 1,
      contentType: meta.contentType || "application/octet-stream",
      metadata: (meta.metadata ?? undefined) as Record<string, string> | undefined,
      created: now,
      updated: now,
      md5,
      crc32c: crc,
      extra,
    };
    b.objects.set(name, o);
    return o;
  }

  function parseMultipart(
    body: Buffer,
    contentType: string,
  ): { meta: ObjectMeta; data: Buffer; dataType?: string } {
    const m = /boundary="?([^";]+)"?/i.exec(contentType);
    if (!m) throw new HttpError(400, "multipart boundary missing");
    const delimiter = Buffer.from(`--${m[1]}`);
    const parts: { headers: string; body: Buffer }[] = [];
    let pos = body.indexOf(delimiter);
    while (pos >= 0) {
      let start = pos + delimiter.length;
      if (body.subarray(start, start + 2).toString() === "--") break;
      start += body[start] === 13 ? 2 : 1;
      const next = body.indexOf(delimiter, start);
      if (next < 0) break;
      let end = next;
      if (body[end - 1] === 10) end--;
      if (body[end - 1] === 13) end--;
      const part = body.subarray(start, end);
      const headerEnd = part.indexOf("\r\n\r\n");
      parts.push({ headers: part.subarray(0, headerEnd).toString(), body: part.subarray(headerEnd + 4) });
      pos = next;
    }
    const [metaPart, dataPart] = parts;
    if (parts.length !== 2 || !metaPart || !dataPart) {
      throw new HttpError(400, `multipart upload needs 2 parts, got ${parts.length}`);
    }
    const dataType = /content-type:\s*([^\r\n]+)/i.exec(dataPart.headers)?.[1];
    return {
      meta: JSON.parse(metaPart.body.toString() || "{}") as ObjectMeta,
      data: dataPart.body,
      ...(dataType === undefined ? {} : { dataType }),
    };
  }

  function listObjects(bucket: string, q: URLSearchParams): Record<string, unknown> {
    const b = bucketOf(bucket);
    const prefix = q.get("prefix") ?? "";
    const delimiter = q.get("delimiter") ?? "";
    const max = Math.min(Number(q.get("maxResults") ?? 1000) || 1000, 1000);
    const token = q.get("pageToken");
    const after = token ? Buffer.from(token, "base64url").toString() : "";
    const startOffset = q.get("startOffset") ?? "";
    const endOffset = q.get("endOffset");
    const trailing = q.get("includeTrailingDelimiter") === "true";
    const names = [...b.objects.keys()]
      .filter((n) => n.startsWith(prefix) && n >= startOffset && (endOffset === null || n < endOffset))
      .sort();
    const items: StoredObject[] = [];
    const prefixes: string[] = [];
    let last = "";
    let next: string | undefined;
    for (const n of names) {
      if (n <= after) continue;
      const rest = n.slice(prefix.length);
      const i = delimiter ? rest.indexOf(delimiter) : -1;
      const commonPrefix = i >= 0 ? prefix + rest.slice(0, i + delimiter.length) : undefined;
      if (commonPrefix !== undefined && (commonPrefix === last || prefixes.includes(commonPrefix))) continue;
      if (items.length + prefixes.length >= max) {
        next = last;
        break;
      }
      if (commonPrefix !== undefined) {
        prefixes.push(commonPrefix);
        last = `${commonPrefix}\uffff`;
        const own = b.objects.get(commonPrefix);
        if (trailing && own) items.push(own);
      } else {
        items.push(b.objects.get(n) as StoredObject);
        last = n;
      }
    }
    return {
      kind: "storage#objects",
      ...(next ? { nextPageToken: Buffer.from(next).toString("base64url") } : {}),
      ...(prefixes.length ? { prefixes } : {}),
      ...(items.length ? { items: items.map(objectJson) } : {}),
    };
  }

  function sendMedia(req: http.IncomingMessage, res: http.ServerResponse, o: StoredObject): void {
    const size = o.data.length;
    const headers: Record<string, string | number> = {
      "Content-Type": o.contentType,
      ETag: `"${o.md5}"`,
      "Last-Modified": new Date(o.updated).toUTCString(),
      "x-goog-generation": o.generation,
      "x-goog-metageneration": o.metageneration,
      "x-goog-stored-content-length": size,
      "x-goog-stored-content-encoding": "identity",
      "x-goog-hash": `crc32c=${o.crc32c},md5=${o.md5}`,
      "Accept-Ranges": "bytes",
    };
    const range = req.headers.range;
    const m = range ? /^bytes=(\d*)-(\d*)$/.exec(range.trim()) : null;
    if (m && (m[1] !== "" || m[2] !== "")) {
      let start: number;
      let end: number;
      if (m[1] === "") {
        start = Math.max(0, size - Number(m[2]));
        end = size - 1;
      } else {
        start = Number(m[1]);
        end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
      }
      if (start >= size || start > end) {
        const message = "The requested range cannot be satisfied.";
        res.writeHead(416, { "Content-Range": `bytes */${size}`, "Content-Type": "application/json" });
        res.end(
          JSON.stringify({
            error: {
              code: 416,
              message,
              errors: [{ domain: "global", reason: "requestedRangeNotSatisfiable", message }],
            },
          }),
        );
        return;
      }
      delete headers["x-goog-hash"]; // a partial body cannot be checked against whole-object hashes
      res.writeHead(206, {
        ...headers,
        "Content-Range": `bytes ${start}-${end}/${size}`,
        "Content-Length": end - start + 1,
      });
      res.end(req.method === "HEAD" ? undefined : o.data.subarray(start, end + 1));
      return;
    }
    res.writeHead(200, { ...headers, "Content-Length": size });
    res.end(req.method === "HEAD" ? undefined : o.data);
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://x");
    const q = url.searchParams;
    const method = req.method ?? "GET";
    let kind: "json" | "upload" | "download" = "json";
    let pathname = url.pathname;
    if (pathname.startsWith("/upload/storage/v1/")) {
      kind = "upload";
      pathname = pathname.slice("/upload/storage/v1".length);
    } else if (pathname.startsWith("/download/storage/v1/")) {
      kind = "download";
      pathname = pathname.slice("/download/storage/v1".length);
    } else if (pathname.startsWith("/storage/v1/")) {
      pathname = pathname.slice("/storage/v1".length);
    }
    // Segments are encodeURIComponent'ed, so a "/" inside an object name survives.
    const seg = pathname.split("/").slice(1).map(decodeURIComponent);
    const s = (i: number): string => seg[i] ?? "";
    const body = await new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      req.on("data", (d: Buffer) => chunks.push(d));
      req.on("end", () => resolve(Buffer.concat(chunks)));
      req.on("error", reject);
    });
    const json = (code: number, value: unknown, extra: Record<string, string> = {}): void => {
      res.writeHead(code, { "Content-Type": "application/json; charset=UTF-8", ...extra });
      res.end(JSON.stringify(value));
    };
    const contentType = req.headers["content-type"] ?? "";
    const hashHeader = req.headers["x-goog-hash"] as string | undefined;

    // Resumable session PUTs: /upload/storage/v1/b/{bucket}/o?uploadType=resumable&upload_id=...
    const uploadId = q.get("upload_id");
    if (kind === "upload" && uploadId) {
      const session = sessions.get(uploadId);
      if (!session) throw new HttpError(404, "No such upload session", "notFound");
      if (method === "DELETE") {
        sessions.delete(uploadId);
        res.writeHead(499).end();
        return;
      }
      if (method !== "PUT" && method !== "POST") throw new HttpError(405, "method not allowed");
      if (session.done) return json(200, objectJson(session.done));
      const contentRange = req.headers["content-range"] ?? `bytes 0-${body.length - 1}/${body.length}`;
      const m = /^bytes (\*|(\d+)-(\d+|\*))\/(\d+|\*)$/.exec(contentRange.trim());
      if (!m) throw new HttpError(400, `Bad Content-Range: ${contentRange}`);
      let total = m[4] === "*" ? undefined : Number(m[4]);
      if (m[1] !== "*") {
        const start = Number(m[2]);
        if (start > session.received) {
          throw new HttpError(
            400,
            `Content-Range starts at ${start} but only ${session.received} bytes were received`,
          );
        }
        const skip = session.received - start; // the client may resend bytes we have
        if (skip < body.length) {
          session.chunks.push(body.subarray(skip));
          session.received += body.length - skip;
        }
        if (m[3] === "*" && total === undefined) total = session.received; // "bytes N-*/*" ends the stream
      }
      if (total !== undefined && session.received > total) {
        throw new HttpError(400, "more bytes than the declared total");
      }
      if (total !== undefined && session.received === total) {
        const data = Buffer.concat(session.chunks);
        session.done = store(session.bucket, session.name, data, session.meta, session.query, hashHeader);
        session.chunks = [];
        return json(200, objectJson(session.done));
      }
      res.writeHead(308, session.received > 0 ? { Range: `bytes=0-${session.received - 1}` } : {}); // Resume Incomplete
      res.end();
      return;
    }
    // Uploads: POST /upload/storage/v1/b/{bucket}/o?uploadType=...
    if (kind === "upload" && method === "POST" && s(0) === "b" && s(2) === "o" && seg.length === 3) {
      const type = q.get("uploadType") ?? "media";
      const bucket = s(1);
      if (type === "media") {
        const o = store(bucket, q.get("name") ?? "", body, contentType ? { contentType } : {}, q, hashHeader);
        return json(200, objectJson(o));
      }
      if (type === "multipart") {
        const { meta, data, dataType } = parseMultipart(body, contentType);
        const name = q.get("name") ?? meta.name ?? "";
        const o = store(
          bucket,
          name,
          data,
          { ...meta, contentType: meta.contentType ?? dataType },
          q,
          hashHeader,
        );
        return json(200, objectJson(o));
      }
      if (type === "resumable") {
        const meta = (body.length ? JSON.parse(body.toString()) : {}) as ObjectMeta;
        const uploadType = req.headers["x-upload-content-type"];
        if (!meta.contentType && typeof uploadType === "string") meta.contentType = uploadType;
        const name = q.get("name") ?? meta.name ?? "";
        checkPreconditions(q, bucketOf(bucket).objects.get(name)); // fail fast; checked again at the end
        const id = crypto.randomBytes(12).toString("hex");
        sessions.set(id, { bucket, name, meta, query: new URLSearchParams(q), chunks: [], received: 0 });
        const location = `${base}/upload/storage/v1/b/${bucket}/o?uploadType=resumable&name=${encodeURIComponent(name)}&upload_id=${id}`;
        return json(200, {}, { Location: location });
      }
      throw new HttpError(400, `unsupported uploadType ${type}`);
    }
    // Buckets.
    if (s(0) === "b" && seg.length === 1) {
      if (method === "POST") {
        const meta = JSON.parse(body.toString() || "{}") as { name?: string };
        const name = meta.name ?? "";
        if (buckets.has(name)) {
          throw new HttpError(
            409,
            "Your previous request to create the named bucket succeeded and you already own it.",
            "conflict",
          );
        }
        addBucket(name);
        return json(200, bucketJson(bucketOf(name)));
      }
      if (method === "GET") {
        return json(200, { kind: "storage#buckets", items: [...buckets.values()].map(bucketJson) });
      }
    }
    if (s(0) === "b" && seg.length === 2) {
      const b = bucketOf(s(1));
      if (method === "GET") return json(200, bucketJson(b));
      if (method === "DELETE") {
        if (b.objects.size) {
          throw new HttpError(409, "The bucket you tried to delete is not empty.", "conflict");
        }
        buckets.delete(b.name);
        res.writeHead(204).end();
        return;
      }
    }
    if (s(0) === "b" && s(2) === "o" && seg.length === 3 && method === "GET") {
      return json(200, listObjects(s(1), q));
    }
    // Copy and rewrite: /b/{sb}/o/{so}/(copyTo|rewriteTo)/b/{db}/o/{do}
    if (s(0) === "b" && s(2) === "o" && (s(4) === "rewriteTo" || s(4) === "copyTo") && method === "POST") {
      const sourceGeneration = q.get("sourceGeneration");
      const source = getObject(
        s(1),
        s(3),
        new URLSearchParams(sourceGeneration ? { generation: sourceGeneration } : {}),
      );
      checkPreconditions(q, source, "ifSource");
      const meta = (body.length ? JSON.parse(body.toString()) : {}) as ObjectMeta;
      const o = store(
        s(6),
        s(8),
        source.data,
        {
          ...source.extra,
          contentType: meta.contentType ?? source.contentType,
          metadata: meta.metadata ?? source.metadata,
        },
        q,
      );
      if (s(4) === "copyTo") return json(200, objectJson(o));
      return json(200, {
        kind: "storage#rewriteResponse",
        totalBytesRewritten: String(o.data.length),
        objectSize: String(o.data.length),
        done: true,
        resource: objectJson(o),
      });
    }
    // One object.
    if (s(0) === "b" && s(2) === "o" && seg.length === 4) {
      const bucket = s(1);
      const name = s(3);
      if (method === "GET" || method === "HEAD") {
        const o = getObject(bucket, name, q);
        checkPreconditions(q, o);
        if (q.get("alt") === "media" || kind === "download") return sendMedia(req, res, o);
        return json(200, objectJson(o));
      }
      if (method === "DELETE") {
        const o = getObject(bucket, name, q);
        checkPreconditions(q, o);
        bucketOf(bucket).objects.delete(name);
        res.writeHead(204).end();
        return;
      }
      if (method === "PATCH" || method === "PUT") {
        const o = getObject(bucket, name, q);
        checkPreconditions(q, o);
        const meta = JSON.parse(body.toString() || "{}") as ObjectMeta;
        if (meta.metadata !== undefined) {
          if (meta.metadata === null) o.metadata = undefined;
          else {
            const merged = { ...(method === "PATCH" ? o.metadata : {}), ...meta.metadata };
            o.metadata = Object.fromEntries(Object.entries(merged).filter(([, v]) => v !== null)) as Record<
              string,
              string
            >;
          }
        }
        if (meta.contentType) o.contentType = meta.contentType;
        o.metageneration++;
        o.updated = new Date().toISOString();
        return json(200, objectJson(o));
      }
    }
    throw new HttpError(404, `Not Found: ${method} ${url.pathname}`, "notFound");
  }

  const local = createLocalServer(
    (req, res) => {
      if (options.log) console.error(`[gcs-fake] ${req.method} ${req.url}`);
      return handle(req, res).catch((error: unknown) => answerError(req, res, error, options.log === true));
    },
    { ...(options.host === undefined ? {} : { host: options.host }), port: options.port ?? 0 },
  );
  return {
    server: local.server,
    buckets,
    addBucket,
    putObject: (bucket, name, data) => {
      store(bucket, name, Buffer.from(data), {}, new URLSearchParams());
    },
    requests: local.requests,
    async listen(): Promise<string> {
      base = await local.listen();
      return base;
    },
    close: () => local.close(),
  };
}

/** The JSON API's error body, or a broken connection once the answer has started. */
function answerError(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  error: unknown,
  log: boolean,
): void {
  const status = error instanceof HttpError ? error.status : 500;
  const message = error instanceof Error ? error.message : String(error);
  if (log || status === 500) console.error(`[gcs-fake] ${req.method} ${req.url} -> ${status} ${message}`);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const reason = error instanceof HttpError ? error.reason : "backendError";
  res.writeHead(status, { "Content-Type": "application/json; charset=UTF-8" });
  res.end(
    JSON.stringify({ error: { code: status, message, errors: [{ domain: "global", reason, message }] } }),
  );
}
