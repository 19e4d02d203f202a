/**
 * What hubcache extracts: regular files and folders, each under exactly its full name, described
 * by pax and GNU long-name headers it understands. Everything else refuses the whole archive.
 */
import { MemberProblem, type RawHeader, shown, utf8 } from "./tar-header.js";

export interface Member {
  /** The full name, as node-tar must report it. */
  path: string;
  kind: "file" | "dir";
  size: number;
}

/** What other typeflags are, for the message that refuses them. */
const REFUSED_TYPES: Record<string, string> = {
  "1": "a hard link",
  "2": "a symbolic link",
  "3": "a character device",
  "4": "a block device",
  "6": "a FIFO",
  S: "a GNU sparse file",
  D: "a GNU dump directory",
  M: "a multi-volume continuation",
  V: "a tape volume label",
  N: "an old GNU long-name entry",
  A: "a Solaris ACL entry",
  I: "an inode-only entry",
  X: "an old-style extended header",
};

export function refusedType(type: string, name: string): MemberProblem {
  const what = REFUSED_TYPES[type] ?? `an entry of unknown type ${shown(type)}`;
  return new MemberProblem("unsafe", `${what} (${name})`);
}

/** pax keys with a value hubcache checks; vendor metadata (extended attributes, ACLs) is allowed too. */
const NUMBER = /^-?[0-9]+(\.[0-9]+)?$/;
const PAX_VALUES: Record<string, RegExp | undefined> = {
  mtime: NUMBER,
  atime: NUMBER,
  ctime: NUMBER,
  uid: /^[0-9]+$/,
  gid: /^[0-9]+$/,
  mode: /^[0-9]+$/,
  uname: undefined,
  gname: undefined,
  charset: undefined,
  comment: undefined,
  hdrcharset: /^ISO-IR 10646 2000 UTF-8$/,
  "SCHILY.fflags": undefined,
  "SCHILY.dev": /^[0-9]+$/,
  "SCHILY.ino": /^[0-9]+$/,
  "SCHILY.nlink": /^[0-9]+$/,
  "SCHILY.devmajor": /^[0-9]+$/,
  "SCHILY.devminor": /^[0-9]+$/,
  "LIBARCHIVE.creationtime": NUMBER,
};
const PAX_METADATA_PREFIXES = ["SCHILY.xattr.", "SCHILY.acl.", "LIBARCHIVE.xattr.", "RHT.security."];

/** Check one pax record of a member's (or, `global`, every member's) extended header. */
export function checkPaxRecord(key: string, value: Buffer, global: boolean, name: string): void {
  if (key.startsWith("GNU.sparse.")) {
    throw new MemberProblem("unsafe", `a sparse file (pax ${key}) (${name})`);
  }
  if (key === "path" || key === "size") {
    if (global) throw new MemberProblem("unsafe", `a global pax header that sets ${key} for every member`);
    return; // read by memberFromHeader
  }
  if (key === "hdrcharset" && value.toString("latin1") !== "ISO-IR 10646 2000 UTF-8") {
    throw new MemberProblem(
      "unsafe",
      `names that are not UTF-8 (pax hdrcharset ${shown(value.toString("latin1"))}) (${name})`,
    );
  }
  if (Object.hasOwn(PAX_VALUES, key)) {
    const pattern = PAX_VALUES[key];
    if (pattern && !pattern.test(value.toString("latin1"))) {
      throw new MemberProblem(
        "corrupt",
        `an invalid pax ${key} ${shown(value.toString("latin1"))} (${name})`,
      );
    }
    return;
  }
  if (PAX_METADATA_PREFIXES.some((prefix) => key.startsWith(prefix))) return;
  throw new MemberProblem("unsafe", `a pax record hubcache does not understand (${shown(key)}) (${name})`);
}

/** Names, then the size, of a file or folder header and the extended headers before it. */
export function memberFromHeader(
  header: RawHeader,
  pax: Map<string, Buffer> | undefined,
  longName: string | undefined,
): Member {
  const paxPath = pax?.get("path");
  const path = paxPath === undefined ? (longName ?? header.name) : paxName(paxPath);
  if (paxPath !== undefined && longName !== undefined && longName !== path) {
    throw new MemberProblem("corrupt", `two different long names (${shown(longName)} and ${shown(path)})`);
  }
  const type = header.type;
  const isFile = type === "0" || type === "\0" || type === "7";
  if (!isFile && type !== "5") throw refusedType(type, path);
  const paxSize = pax?.get("size")?.toString("latin1");
  if (paxSize !== undefined && !/^[0-9]+$/.test(paxSize)) {
    throw new MemberProblem("corrupt", `an invalid pax size ${shown(paxSize)} (${path})`);
  }
  const size = paxSize === undefined ? header.size : Number(paxSize);
  // Old tars mark folders as files with a trailing slash; node-tar reads them so too.
  const kind = type === "5" || (type !== "7" && path.endsWith("/")) ? "dir" : "file";
  if (kind === "dir" && size !== 0) {
    throw new MemberProblem("corrupt", `a folder with ${size} bytes of data (${path})`);
  }
  return { path, kind, size };
}

function paxName(value: Buffer): string {
  if (value.includes(0)) {
    throw new MemberProblem("unsafe", `a name with a NUL byte in it (${shown(value.toString("latin1"))})`);
  }
  const name = utf8(value, "a name");
  if (name === "") throw new MemberProblem("corrupt", "an empty pax path");
  return name;
}

/** The longest file or folder name (one path part) Linux, macOS and Windows file systems allow. */
const MAX_NAME_BYTES = 255;

/** Why a member's name cannot be extracted as is, or undefined. */
export function pathProblem(member: Member): string | undefined {
  const name = member.path;
  if (name.startsWith("/") || name.startsWith("\\") || /^[a-zA-Z]:/.test(name)) {
    return `an absolute path (${name})`;
  }
  const parts = name.split(/[\\/]/);
  if (parts.includes("..")) return `a path with ".." (${name})`;
  const long = parts.find((part) => Buffer.byteLength(part) > MAX_NAME_BYTES);
  if (long !== undefined) {
    return `a name part longer than ${MAX_NAME_BYTES} bytes, more than file systems allow (${name})`;
  }
  const last = parts.at(-1);
  if (member.kind === "file" && (last === "." || last === "" || components(name).length === 0)) {
    return `a regular file named ${shown(name)} (not a file name)`;
  }
  return undefined;
}

/** "./a//b/" -> ["a", "b"]: the folders and file a name lands on. */
export function components(name: string): string[] {
  return name.split("/").filter((part) => part !== "" && part !== ".");
}

/**
 * The type of every path the archive has made so far: a member that turns a file into a folder
 * (or a folder into a file) refuses the archive. Folders implied by deeper names count as folders.
 */
export class PathKinds {
  private readonly kinds = new Map<string, "file" | "dir">();

  check(member: Member): string | undefined {
    const parts = components(member.path);
    let prefix = "";
    for (let i = 0; i < parts.length - 1; i++) {
      prefix = i === 0 ? (parts[0] as string) : `${prefix}/${parts[i]}`;
      const kind = this.kinds.get(prefix);
      if (kind === "file") {
        return `a file ${shown(prefix)} that a later member uses as a folder (${member.path})`;
      }
      if (kind === undefined) this.kinds.set(prefix, "dir");
    }
    if (parts.length === 0) return undefined; // the top folder itself ("./")
    const key = parts.join("/");
    const before = this.kinds.get(key);
    if (before !== undefined && before !== member.kind) {
      const [was, now] = before === "dir" ? ["a folder", "a file"] : ["a file", "a folder"];
      return `${was} that a later member turns into ${now} (${member.path})`;
    }
    this.kinds.set(key, member.kind);
    return undefined;
  }
}
