/** Reading request headers and writing Vary, the same way in every answer the mirror gives. */
import type { IncomingMessage } from "node:http";

/** A request header as one string (repeated headers joined with ", "). */
export function headerValue(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(", ") : value;
}

/** Does a list header (Accept, Accept-Encoding) name one of `tokens` with a q-value above 0? */
export function acceptsAny(header: string | undefined, tokens: readonly string[]): boolean {
  return (header ?? "").split(",").some((part) => {
    const [token = "", ...params] = part.trim().toLowerCase().split(";");
    const q = params.find((param) => param.trim().startsWith("q="));
    return tokens.includes(token.trim()) && (q === undefined || Number(q.trim().slice(2)) > 0);
  });
}

/** The Vary value of `headers` (CORS may have set `Origin`) with `names` added, each once. */
export function varyOn(headers: Record<string, string>, ...names: string[]): string {
  const all = [...(headers.vary ?? "").split(","), ...names].map((name) => name.trim()).filter(Boolean);
  return [...new Map(all.map((name) => [name.toLowerCase(), name])).values()].join(", ");
}
