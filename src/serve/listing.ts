/** The handle a TF Hub descriptor names, for `/_files/<hash>` (the listing itself is manage/list.ts). */
import { promises as fs } from "node:fs";
import { errnoCode } from "../errors.js";

/** The handle in a TF Hub descriptor (`Module: <handle>` on its first line). */
export async function descriptorHandle(file: string): Promise<string | undefined> {
  try {
    const text = await fs.readFile(file, "utf8");
    return /^Module: (.*)$/m.exec(text)?.[1];
  } catch (error) {
    if (errnoCode(error) === "ENOENT") return undefined;
    throw error;
  }
}
