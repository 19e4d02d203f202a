/** The HTTP stack a resolve uses: the caller's fetch, or hubcache's own client, closed afterwards. */
import type { EventListener } from "../events.js";
import { httpStack } from "../net/client.js";
import type { Transport } from "../net/download.js";
import type { FetchFunction } from "../net/http-errors.js";
import type { ResolveOptions, ResolvedSettings } from "../settings.js";
import { type RequestRoute, routeFetch, routeTransport } from "../net/route.js";

/** Where resolveRouted's route travels to withHttpClient (internal; never set by callers). */
export const ROUTE = Symbol("hubcache.route");
export type RoutedOptions = ResolveOptions & { [ROUTE]?: RequestRoute };

/**
 * Run `work` with an HTTP stack: the caller's fetch if given; else hubcache's undici client
 * (proxies, connect timeout, TLS flag) for small requests, and for archive bodies the node:http
 * fast path unless a proxy is configured. The client is closed afterwards.
 */
export async function withHttpClient<T>(
  settings: ResolvedSettings,
  options: Pick<ResolveOptions, "fetch">,
  handle: string,
  emit: EventListener,
  work: (fetch: FetchFunction, transport: Transport) => Promise<T>,
): Promise<T> {
  const route = (options as RoutedOptions)[ROUTE];
  const routed = (fetch: FetchFunction, transport: Transport): Promise<T> =>
    route ? work(routeFetch(fetch, route), routeTransport(transport, route)) : work(fetch, transport);
  if (options.fetch) {
    const stack = httpStack(settings.network, options.fetch);
    return routed(stack.fetch, stack.transport);
  }
  if (settings.network.insecureTls) {
    emit({
      type: "warning",
      handle,
      message:
        "TFHUB_DISABLE_CERT_VALIDATION=true: TLS certificates are not checked, so anyone on the network path can substitute the model.",
    });
  }
  const stack = httpStack(settings.network, undefined, route?.guard);
  try {
    return await routed(stack.fetch, stack.transport);
  } finally {
    await stack.close();
  }
}
