/**
 * Cloud SDKs are optional dependencies, imported the first time a gs:// or s3:// location is used:
 * people who only use local paths and http(s) never load them, and can leave them out
 * (`npm install --omit=optional`). A missing SDK becomes a coded error that says what to install.
 */
import { ErrorCode, HubcacheError } from "../errors.js";

export type Importer<T> = () => Promise<T>;

function isModuleNotFound(error: unknown, name: string): boolean {
  const code = (error as { code?: unknown } | undefined)?.code;
  const message = error instanceof Error ? error.message : String(error);
  return (code === "ERR_MODULE_NOT_FOUND" || code === "MODULE_NOT_FOUND") && message.includes(name);
}

const loaded = new Map<string, Promise<unknown>>();

/**
 * Import an optional package once per process. `packages` is what to tell the user to install
 * (the package itself, and any sibling it needs), `scheme` what it is for.
 */
export function loadSdk<T>(
  name: string,
  importer: Importer<T>,
  scheme: string,
  packages = [name],
): Promise<T> {
  let promise = loaded.get(name) as Promise<T> | undefined;
  if (!promise) {
    promise = importer().catch((error: unknown) => {
      loaded.delete(name);
      if (isModuleNotFound(error, name)) {
        throw new HubcacheError(
          ErrorCode.MISSING_DEPENDENCY,
          `${scheme}:// locations need the optional package ${name}, which is not installed.`,
          {
            hint: `Install it next to hubcache: npm install ${packages.join(" ")} (it is an optional dependency, left out by --omit=optional or --no-optional).`,
            cause: error,
          },
        );
      }
      throw error;
    });
    loaded.set(name, promise);
  }
  return promise;
}
