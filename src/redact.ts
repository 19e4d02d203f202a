/**
 * Redaction of credentials and signed-URL query strings. Everything hubcache shows a person
 * (error messages, hints, events) goes through here.
 */

const SIGNED_QUERY_PARAM =
  /^(x-goog-|x-amz-|x-ms-|sig$|signature$|se$|sp$|sv$|st$|skoid|sktid|googleaccessid$|awsaccesskeyid$|expires$|policy$|key-pair-id$)/i;
const SECRET_PARAM = /(token|secret|password|passwd|api[-_]?key|access[-_]?key|credential|auth|session)/i;

/** Redact one URL: user info is masked, a signed query is replaced whole, secret-looking params masked. */
export function redactUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return url;
  }
  if (parsed.protocol === "file:") return url;
  let changed = false;
  if (parsed.username || parsed.password) {
    parsed.username = "***";
    parsed.password = "";
    changed = true;
  }
  const names = [...parsed.searchParams.keys()];
  if (names.some((name) => SIGNED_QUERY_PARAM.test(name))) {
    // A signed URL: its query is a bearer credential. Keep the shape, drop the values.
    parsed.search = "";
    const base = parsed.toString();
    const hashIndex = base.indexOf("#");
    const head = hashIndex === -1 ? base : base.slice(0, hashIndex);
    const tail = hashIndex === -1 ? "" : base.slice(hashIndex);
    return `${head}?[signed query redacted]${tail}`;
  }
  for (const name of names) {
    if (SECRET_PARAM.test(name)) {
      parsed.searchParams.set(name, "REDACTED");
      changed = true;
    }
  }
  return changed ? parsed.toString() : url;
}

const URL_IN_TEXT = /\b[a-z][a-z0-9+.-]*:\/\/[^\s"'<>`]+/gi;

/** Redact every URL found in a free-form text. */
export function redactText(text: string): string {
  return text.replace(URL_IN_TEXT, (match) => {
    // Keep sentence punctuation that happens to follow a URL outside of it.
    const trailing = /[.,;:)\]]+$/.exec(match)?.[0] ?? "";
    const url = trailing ? match.slice(0, -trailing.length) : match;
    return redactUrl(url) + trailing;
  });
}
