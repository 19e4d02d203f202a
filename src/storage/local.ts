/**
 * Local disk as a Storage: keys are paths below a root directory. Writes go to a unique temp name
 * and are renamed (or, create-only, hard-linked) into place, so readers never see a partial file.
 */
import { constants, createReadStream, createWriteStream, promises as fs } from "node:fs";
import path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { errnoCode, writeFailure } from "../errors.js";
import { makeDirs } from "../make-dirs.js";
import { newUid } from "../uid.js";
import { objectNotFound } from "./errors.js";
import { checkKey } from "./location.js";
import type { ByteRange, ObjectBody, Storage, StoredObject, WriteBody, WriteOptions } from "./types.js";

/** Our own in-flight temp files (`name.tmp<32 hex>`), hidden from listings. */
const TEMP_NAME = /\.tmp[0-9a-f]{32}$/;

function notWritable(location: string, cause: unknown): unknown {
  return writeFailure(cause, {
    what: location,
    notWritableMessage: `${location} cannot be written (${errnoCode(cause) ?? "error"}).`,
    notWritableHint: "Check the directory's permissions, or choose a directory you can write.",
  });
}

const WRITE_ERRORS = new Set(["EACCES", "EPERM", "EROFS", "ENOSPC", "EDQUOT"]);

export class LocalStorage implements Storage {
  readonly scheme = "file";
  readonly readOnly = false;

  constructor(readonly location: string) {}

  locationOf(key: string): string {
    checkKey(key);
    return key ? path.join(this.location, ...key.split("/").filter(Boolean)) : this.location;
  }

  async stat(key: string): Promise<StoredObject | undefined> {
    try {
      const stat = await fs.stat(this.locationOf(key));
      if (!stat.isFile()) return undefined;
      return {
        key,
        size: stat.size,
        modifiedMs: stat.mtimeMs,
        version: `${stat.ino}-${stat.size}-${stat.mtimeMs}`,
      };
    } catch (error) {
      const code = errnoCode(error);
      if (code === "ENOENT" || code === "ENOTDIR") return undefined;
      throw error;
    }
  }

  async read(key: string, range?: ByteRange): Promise<ObjectBody> {
    const file = this.locationOf(key);
    const handle = await fs.open(file, "r").catch((error: unknown) => {
      const code = errnoCode(error);
      if (code === "ENOENT" || code === "ENOTDIR" || code === "EISDIR") throw objectNotFound(file, error);
      throw error;
    });
    const stat = await handle.stat();
    if (!stat.isFile()) {
      await handle.close();
      throw objectNotFound(file);
    }
    const start = range?.start ?? 0;
    const end = Math.min(range?.end ?? stat.size - 1, stat.size - 1);
    if (end < start) {
      await handle.close();
      return { body: Readable.from([]), length: 0, contentType: undefined };
    }
    const body = createReadStream(file, { fd: handle, start, end, highWaterMark: 1 << 20 });
    return { body, length: Math.max(0, end - start + 1), contentType: undefined };
  }

  async *list(prefix: string): AsyncIterable<StoredObject> {
    const slash = prefix.lastIndexOf("/");
    const dirKey = slash === -1 ? "" : prefix.slice(0, slash);
    const namePrefix = prefix.slice(slash + 1);
    checkKey(dirKey);
    let entries;
    try {
      entries = await fs.readdir(this.locationOf(dirKey), { withFileTypes: true });
    } catch (error) {
      const code = errnoCode(error);
      if (code === "ENOENT" || code === "ENOTDIR") return;
      throw error;
    }
    // Emit in full-key order, as object stores do: a folder "a" sorts as "a/", after "a.b".
    const items = entries
      .filter((entry) => entry.name.startsWith(namePrefix))
      .map((entry) => ({ key: dirKey ? `${dirKey}/${entry.name}` : entry.name, isDir: entry.isDirectory() }));
    items.sort((a, b) => {
      const ka = a.isDir ? `${a.key}/` : a.key;
      const kb = b.isDir ? `${b.key}/` : b.key;
      return ka < kb ? -1 : ka > kb ? 1 : 0;
    });
    for (const item of items) {
      if (item.isDir) {
        yield* this.list(`${item.key}/`);
      } else if (!TEMP_NAME.test(item.key)) {
        const object = await this.stat(item.key);
        if (object) yield object;
      }
    }
  }

  async write(key: string, body: WriteBody, options: WriteOptions = {}): Promise<boolean> {
    const file = this.locationOf(key);
    if (!key) throw objectNotFound(file);
    const tmp = `${file}.tmp${newUid()}`;
    try {
      await makeDirs(path.dirname(file));
      const source =
        typeof body === "string" || body instanceof Uint8Array ? Readable.from([Buffer.from(body)]) : body;
      await pipeline(source, createWriteStream(tmp, { flags: "wx" }));
      if (options.ifAbsent) {
        try {
          await fs.link(tmp, file);
        } catch (error) {
          const code = errnoCode(error);
          if (code === "EEXIST") return false;
          if (code !== "EPERM" && code !== "ENOTSUP" && code !== "ENOSYS") throw error;
          // No hard links here: an exclusive create, then the content (not atomic for readers).
          try {
            await fs.copyFile(tmp, file, constants.COPYFILE_EXCL);
          } catch (inner) {
            if (errnoCode(inner) === "EEXIST") return false;
            throw inner;
          }
        }
        return true;
      }
      await fs.rename(tmp, file);
      return true;
    } catch (error) {
      if (WRITE_ERRORS.has(errnoCode(error) ?? "")) throw notWritable(file, error);
      throw error;
    } finally {
      await fs.rm(tmp, { force: true }).catch(() => undefined);
    }
  }

  async publish(from: string, to: string): Promise<void> {
    const source = this.locationOf(from);
    const target = this.locationOf(to);
    try {
      await makeDirs(path.dirname(target));
      await fs.rename(source, target);
    } catch (error) {
      const code = errnoCode(error);
      if (code === "ENOENT") throw objectNotFound(source, error);
      if (WRITE_ERRORS.has(code ?? "")) throw notWritable(target, error);
      throw error;
    }
  }

  async delete(key: string): Promise<void> {
    const file = this.locationOf(key);
    try {
      await fs.unlink(file);
    } catch (error) {
      const code = errnoCode(error);
      if (code === "ENOENT" || code === "ENOTDIR") return;
      if (WRITE_ERRORS.has(code ?? "")) throw notWritable(file, error);
      throw error;
    }
  }
}
