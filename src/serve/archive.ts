/**
 * A cached model as the hub sends it: a tar of the entry, the way TF Hub's docs build one
 * (`tar -C dir .`: entries `./saved_model.pb`, a directory before what it holds), from any
 * ModelFiles (a local entry folder, a bucket entry). Plain tar needs no inflate on the client (the
 * fastest form for a hubcache client on a LAN); gzip'd is the hub's own form. Streamed with
 * backpressure, file after file: a slow client holds only a socket's worth of bytes. Headers are
 * encoded by node-tar (Header, Pax); the layout is fixed, so the plain tar of a recorded entry has
 * an ETag (archiveEtag).
 */
import { createHash } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import zlib from "node:zlib";
import * as tar from "tar";
import { etagMatches } from "./files.js";
import { type ModelFile, type ModelFiles, type ModelListing, byPath } from "./model-files.js";
import { acceptsAny, headerValue, varyOn } from "./headers.js";

export type ArchiveEncoding =
  /** Plain tar. */
  | "tar"
  /** Plain tar sent with Content-Encoding: gzip (the client asked with Accept-Encoding). */
  | "tar+content-encoding"
  /** A .tar.gz body (`hubcache-archive=tar.gz`), as tfhub.dev answers. */
  | "tar.gz";

/** Which form to send: an explicit `hubcache-archive` wins, then Accept-Encoding, else plain tar. */
export function chooseArchiveEncoding(
  req: IncomingMessage,
  bodyForm: "tar" | "tar.gz" | undefined,
): ArchiveEncoding {
  if (bodyForm === "tar.gz") return "tar.gz";
  if (bodyForm === "tar") return "tar";
  const gzip = acceptsAny(headerValue(req, "accept-encoding"), ["gzip", "x-gzip"]);
  return gzip ? "tar+content-encoding" : "tar";
}

/** One member of the archive: a directory, or a file with its bytes. */
interface Member {
  /** Relative to the entry, without a trailing "/". */
  path: string;
  file: ModelFile | undefined;
  mtime: Date;
}

/**
 * The archive's members, in a fixed order (by path: a directory before what it holds), with fixed
 * modes and each file's time in whole seconds; directories take their newest file's time. The
 * archive is thereby a function of the listing and the files' bytes, whatever holds them.
 */
function archiveMembers(listing: ModelListing): Member[] {
  const seconds = (ms: number): Date => new Date(Math.floor(ms / 1000) * 1000);
  const newest = new Map<string, number>();
  for (const dir of listing.dirs) newest.set(dir, 0);
  for (const file of listing.files) {
    const parts = file.path.split("/");
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join("/");
      newest.set(dir, Math.max(newest.get(dir) ?? 0, file.modifiedMs));
    }
  }
  const rootMs = Math.max(0, ...listing.files.map((file) => file.modifiedMs));
  const members: Member[] = [
    ...[...newest].map(([dir, ms]) => ({ path: dir, file: undefined, mtime: seconds(ms || rootMs) })),
    ...listing.files.map((file) => ({ path: file.path, file, mtime: seconds(file.modifiedMs) })),
  ].sort(byPath);
  return [{ path: "", file: undefined, mtime: seconds(rootMs) }, ...members];
}

/** A member's header block(s): a pax extended header first when its path does not fit ustar's fields. */
function memberHeader(member: Member): Buffer {
  const name = member.path === "" ? "./" : member.file ? `./${member.path}` : `./${member.path}/`;
  const fields = {
    path: name,
    mode: member.file ? 0o644 : 0o755,
    size: member.file?.size ?? 0,
    mtime: member.mtime,
    type: member.file ? ("File" as const) : ("Directory" as const),
  };
  const header = new tar.Header(fields);
  const needPax = header.encode();
  if (!header.block) throw new Error(`cannot encode a tar header for ${name}`);
  return needPax
    ? Buffer.concat([
        new tar.Pax({ path: name, size: fields.size, mtime: fields.mtime }).encode(),
        header.block,
      ])
    : header.block;
}

/** The tar's bytes, member by member; a file whose bytes are not its listed size fails the archive. */
async function* tarBytes(files: ModelFiles, members: Member[]): AsyncGenerator<Buffer> {
  for (const member of members) {
    yield memberHeader(member);
    const file = member.file;
    if (file === undefined || file.size === 0) continue;
    let seen = 0;
    for await (const chunk of await files.open(file)) {
      seen += (chunk as Buffer).length;
      if (seen > file.size) throw new Error(`${file.path} has more than its ${file.size} bytes`);
      yield chunk as Buffer;
    }
    if (seen !== file.size) throw new Error(`${file.path} has ${seen} bytes, expected ${file.size}`);
    const padding = (512 - (file.size % 512)) % 512;
    if (padding > 0) yield Buffer.alloc(padding);
  }
  yield Buffer.alloc(1024); // the end-of-archive marker: two zero blocks
}

/**
 * A strong validator of the plain tar, when it is well defined: every file of it is vouched for by
 * the entry's record (its CRC-32 and size), so the bytes (members, times, contents) are a function
 * of what is hashed here. Undefined otherwise, and for the gzip'd forms (their bytes depend on zlib).
 */
export function archiveEtag(
  hash: string,
  listing: ModelListing,
  encoding: ArchiveEncoding,
): string | undefined {
  if (encoding !== "tar" || listing.files.length === 0) return undefined;
  if (listing.files.some((file) => file.recordedCrc32 === undefined)) return undefined;
  const digest = createHash("sha1").update(`${ARCHIVE_FORMAT}\0${hash}`);
  for (const member of archiveMembers(listing)) {
    const { file } = member;
    const what = file ? `f\0${file.size}\0${file.recordedCrc32 ?? ""}` : "d";
    digest.update(`\0${member.path}\0${what}\0${member.mtime.getTime()}`);
  }
  return `"tar-${digest.digest("hex").slice(0, 32)}"`;
}

/** Names how archiveMembers and memberHeader lay out an archive: change it when they change. */
const ARCHIVE_FORMAT = "hubcache-tar-1";

/** Send the model `files` as a tar archive in the chosen form. */
export async function serveArchive(
  req: IncomingMessage,
  res: ServerResponse,
  files: ModelFiles,
  encoding: ArchiveEncoding,
  headers: Record<string, string>,
): Promise<void> {
  const listing = await files.list();
  const etag = archiveEtag(files.hash, listing, encoding);
  const common = {
    ...headers,
    ...(etag === undefined ? {} : { etag }),
    vary: varyOn(headers, "Accept", "Accept-Encoding"),
    "accept-ranges": "none",
  };
  if (etag !== undefined && etagMatches(headerValue(req, "if-none-match"), etag)) {
    res.writeHead(304, common).end();
    return;
  }
  res.writeHead(200, {
    ...common,
    "content-type": encoding === "tar.gz" ? "application/gzip" : "application/x-tar",
    ...(encoding === "tar+content-encoding" ? { "content-encoding": "gzip" } : {}),
  });
  if (req.method === "HEAD") {
    res.end();
    return;
  }
  const source = Readable.from(tarBytes(files, archiveMembers(listing)), { objectMode: false });
  const stages =
    encoding === "tar"
      ? pipeline(source, res)
      : pipeline(source, zlib.createGzip({ level: zlib.constants.Z_BEST_SPEED }), res);
  // The client went away, or a file could not be read: the connection is dropped, so the client
  // sees a cut (no tar end marker), never a short archive that looks whole.
  await stages.catch(() => res.destroy());
}
