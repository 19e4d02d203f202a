/** A local path handle: the model folder is used where it is. */
import { type Stats, promises as fs } from "node:fs";
import { ErrorCode, HubcacheError, errnoCode } from "../errors.js";

/** A local path handle's stat, or ERR_HUBCACHE_NOT_FOUND saying so. */
export async function statLocalPath(handle: string, localPath: string): Promise<Stats> {
  try {
    return await fs.stat(localPath);
  } catch (error) {
    if (errnoCode(error) === "ENOENT" || errnoCode(error) === "ENOTDIR") {
      throw new HubcacheError(ErrorCode.NOT_FOUND, `${handle} does not exist.`, {
        handle,
        hint: "Check the path, or give a URL (https://tfhub.dev/...) to download a model.",
      });
    }
    throw error;
  }
}
