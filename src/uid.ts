/** Unique ids for temp names and lock contents. Base layer: imports nothing of hubcache's. */
import { randomUUID } from "node:crypto";

/** A fresh 32-hex-digit id, like Python's `uuid.uuid4().hex`. */
export function newUid(): string {
  return randomUUID().replaceAll("-", "");
}
