/**
 * Redaction of credentials and query values. Everything hubcache shows a person or writes down
 * (error messages, hints, events, --json output) goes through here. The rules are total, for any
 * string, parseable or not:
 *
 * - user info: everything between `://` and the `@` that ends it is replaced by `***`. The user
 *   info ends at the last `@` before the authority ends (`/`, `?`, `#` or a line break, as URL
 *   parsers read it: spaces, quotes and backticks do not end it); when the part after `://` is no
 *   valid host, the last `@` on the line ends it, so an unparseable string hides more, not less.
 *   An `@` right after a space ends no user info (an npm scope: "s3:// needs @aws-sdk/client-s3");
 * - a signed query (X-Goog-*, X-Amz-*, sig, ...) is replaced whole;
 * - any other query keeps its parameter names and loses every value, except the values hubcache
 *   itself adds (`tf-hub-format`, `tfjs-format`);
 * - a fragment is replaced whole (it may carry a token, as OAuth's implicit flow does).
 */

const SIGNED_QUERY_PARAM =
  /^(x-goog-|x-amz-|x-ms-|sig$|signature$|se$|sp$|sv$|st$|skoid|sktid|googleaccessid$|awsaccesskeyid$|expires$|policy$|key-pair-id$)/i;

/** Query parameters whose values hubcache adds itself, and shows. */
const KEPT_QUERY_PARAMS = new Set(["tf-hub-format", "tfjs-format"]);

export const REDACTED = "REDACTED";

/** Where a URL starts: `scheme://`. */
const SCHEME = /\b[a-z][a-z0-9+.-]*:\/\//gi;
/** A host, with an optional port: what may come between `://` and the path when there is no user info. */
const HOST_AND_PORT = /^([^\s/?#@:[\]"'<>`\\]*|\[[0-9a-f:.]*\])(:\d*)?$/i;
/** Where the rest of a URL (host, path, query, fragment) ends inside a text. */
const URL_END = /[\s"<>`]/;
/** Sentence punctuation that follows a URL in a text but is not part of it. */
const TRAILING_PUNCTUATION = /[.,;:!)\]}]+$/;

/** Redact one URL (or any string that holds URLs): same rules as redactText. */
export function redactUrl(url: string): string {
  return redactText(url);
}

/** Redact every URL found in a free-form text (messages, hints, JSON). */
export function redactText(text: string): string {
  let result = "";
  let position = 0;
  SCHEME.lastIndex = 0;
  for (let match = SCHEME.exec(text); match !== null; match = SCHEME.exec(text)) {
    if (match.index < position) continue; // inside the URL just redacted (e.g. a query value)
    const afterScheme = match.index + match[0].length;
    result += text.slice(position, afterScheme);
    const userInfoEnd = findUserInfoEnd(text, afterScheme);
    let restStart = afterScheme;
    if (userInfoEnd !== undefined) {
      result += "***@";
      restStart = userInfoEnd + 1;
    }
    const restEnd = findUrlEnd(text, restStart);
    result += redactUrlRest(text.slice(restStart, restEnd));
    position = restEnd;
    SCHEME.lastIndex = Math.max(restEnd, afterScheme);
  }
  return result + text.slice(position);
}

/** The index of the `@` that ends the user info of the URL whose authority starts at `start`. */
function findUserInfoEnd(text: string, start: number): number | undefined {
  const lineEnd = indexOfAny(text, /[\r\n]/, start);
  const authorityEnd = indexOfAny(text, /[/?#\r\n]/, start);
  const authority = text.slice(start, authorityEnd);
  const at = lastUserInfoAt(authority);
  if (at !== undefined) return start + at;
  // "s3:// locations need ..." in prose: no URL starts here.
  if (authority.length === 0 || /^\s/.test(authority)) return undefined;
  if (HOST_AND_PORT.test(authority.split(URL_END)[0] ?? "")) return undefined;
  // Not a URL a parser can read: hide up to the last `@` on the line, if there is one.
  const lastAt = lastUserInfoAt(text.slice(start, lineEnd));
  return lastAt === undefined ? undefined : start + lastAt;
}

/**
 * The last `@` that can end user info: not one right after a space, which starts an npm scope
 * ("needs @aws-sdk/client-s3") or a mention, not a host.
 */
function lastUserInfoAt(text: string): number | undefined {
  for (let i = text.lastIndexOf("@"); i !== -1; i = i === 0 ? -1 : text.lastIndexOf("@", i - 1)) {
    if (i === 0 || !/\s/.test(text[i - 1] ?? "")) return i;
  }
  return undefined;
}

function indexOfAny(text: string, chars: RegExp, start: number): number {
  const found = chars.exec(text.slice(start));
  return found === null ? text.length : start + found.index;
}

/** Where the URL whose host starts at `start` ends: at a space or quote, without trailing punctuation. */
function findUrlEnd(text: string, start: number): number {
  const end = indexOfAny(text, URL_END, start);
  const trailing = TRAILING_PUNCTUATION.exec(text.slice(start, end))?.[0] ?? "";
  return end - trailing.length;
}

/** Host and path kept; query values and the fragment redacted. */
function redactUrlRest(rest: string): string {
  const hashIndex = rest.indexOf("#");
  const beforeFragment = hashIndex === -1 ? rest : rest.slice(0, hashIndex);
  const fragment = hashIndex === -1 || hashIndex === rest.length - 1 ? rest.slice(hashIndex) : `#${REDACTED}`;
  const queryIndex = beforeFragment.indexOf("?");
  if (queryIndex === -1) return beforeFragment + (hashIndex === -1 ? "" : fragment);
  const base = beforeFragment.slice(0, queryIndex);
  const pairs = beforeFragment.slice(queryIndex + 1).split("&");
  const names = pairs.map((pair) => decodeName(pair.split("=")[0] ?? ""));
  if (names.some((name) => SIGNED_QUERY_PARAM.test(name))) {
    // A signed URL: its query is a bearer credential. Keep the shape, drop it whole.
    return `${base}?[signed query redacted]${hashIndex === -1 ? "" : fragment}`;
  }
  const query = pairs.map((pair, i) => {
    const eq = pair.indexOf("=");
    if (eq === -1 || eq === pair.length - 1 || KEPT_QUERY_PARAMS.has(names[i] ?? "")) return pair;
    return `${pair.slice(0, eq)}=${REDACTED}`;
  });
  return `${base}?${query.join("&")}${hashIndex === -1 ? "" : fragment}`;
}

function decodeName(name: string): string {
  try {
    return decodeURIComponent(name.replace(/\+/g, " "));
  } catch {
    return name;
  }
}

/** Known secrets shorter than this are left to the structural rules (they would match too much). */
const MIN_KNOWN_SECRET = 4;

/** A string known to be one whole URL, redacted to its end (spaces and quotes included). */
function redactWholeUrl(url: string): string {
  const schemeEnd = url.indexOf("://");
  if (schemeEnd === -1) return url;
  const start = schemeEnd + 3;
  const userInfoEnd = findUserInfoEnd(url, start);
  const head = url.slice(0, start) + (userInfoEnd === undefined ? "" : "***@");
  return head + redactUrlRest(url.slice(userInfoEnd === undefined ? start : userInfoEnd + 1));
}

/**
 * For strings known to be whole URLs (a program's arguments): pairs of what may be shown of each
 * and what must be shown instead. redactText cannot tell where a URL in a text ends when a query
 * value holds a raw space ("?key=my secret" shows "secret"); knowing the URL, this can. The raw
 * URL, and its redactText form, map to the URL redacted to its very end.
 */
export function knownUrlReplacements(urls: readonly string[]): [string, string][] {
  const pairs: [string, string][] = [];
  for (const url of urls) {
    const safe = redactWholeUrl(url);
    for (const shown of [url, redactText(url)]) {
      if (shown !== safe && shown.length >= MIN_KNOWN_SECRET) pairs.push([shown, safe]);
      const escaped = JSON.stringify(shown).slice(1, -1);
      if (escaped !== shown && shown !== safe) pairs.push([escaped, JSON.stringify(safe).slice(1, -1)]);
    }
  }
  return pairs.sort((a, b) => b[0].length - a[0].length);
}

/** `text` with each known URL form replaced by its safe form (see knownUrlReplacements). */
export function replaceKnownUrls(text: string, pairs: readonly [string, string][]): string {
  let result = text;
  for (const [shown, safe] of pairs) result = result.split(shown).join(safe);
  return result;
}
