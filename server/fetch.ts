// tRPC over the Fetch API: one function from a Request to a Response (tRPC's fetch adapter), for Next.js route
// handlers, Hono, Bun and Deno. The same router, context, limits, refusals and error shapes as the Fastify server.
import type { IncomingHttpHeaders } from 'node:http';
import { fetchRequestHandler } from '@trpc/server/adapters/fetch';
import type { Database } from '../db/client.ts';
import { DEFAULT_APP_ROLE } from '../db/migrate.ts';
import type { Authenticator } from './auth.ts';
import { createContextFactory, rateLimitResponseMeta } from './context.ts';
import { errorResponse, RETRY_AFTER_SECONDS, subscriptionRefusals, transportErrorBody } from './errors.ts';
import type { LiveHub } from './live.ts';
import { createRateLimits, type RateLimitOptions } from './rate-limit.ts';
import { appRouter } from './router.ts';
import { liveInputs } from './routers/live.ts';

export interface FetchHandlerOptions {
  db: Database;
  /** Turns the request's headers into a session (createJwtAuthenticator, or the host's own). */
  authenticate: Authenticator;
  /** Role request transactions switch to (DB_APP_ROLE; default skillviews_app). */
  appRole?: string;
  /** Where tRPC is mounted, e.g. '/api/trpc' for a Next.js route `app/api/trpc/[trpc]/route.ts` (default '/trpc'). */
  endpoint?: string;
  /** Show internal error messages and stacks to clients (local debugging only; default false). */
  exposeErrors?: boolean;
  /** Rate limits (as the Fastify server's); unset: none. */
  rateLimit?: RateLimitOptions;
  /** The client's address for the per-IP limit (the Fetch API has none; e.g. from your platform's header). */
  clientIp?: (req: Request) => string | undefined;
  /** The live-update hub for onChange (started by you; unset: onChange answers 501). */
  live?: LiveHub | null;
  /** Longest batch accepted (default 50, the client's maxItems). */
  maxBatchSize?: number;
  /** Largest request body accepted, in bytes (default 1 MiB, as the Fastify server); larger: 413, read no further. */
  maxBodySize?: number;
  /** Called for every failed call (log it; internal causes are never sent to clients). */
  onError?: (info: { error: Error & { code: string; cause?: unknown }; path: string | undefined; req: Request }) => void;
}

/** The request's headers as Node's IncomingHttpHeaders (lower-case names), which authenticators read. */
function nodeHeaders(headers: Headers): IncomingHttpHeaders {
  const result: IncomingHttpHeaders = {};
  for (const [name, value] of headers) result[name] = value;
  return result;
}

/**
 * `(req: Request) => Promise<Response>` serving the module's router at `endpoint`. Answers as the Fastify server
 * does: batching (up to maxBatchSize), queries over GET or POST, tRPC's error shape with zod issues for BAD_REQUEST
 * and no internal detail unless exposeErrors, `RateLimit-*` headers, `Retry-After` on 503, and live streams refused
 * with their HTTP status (401, 429, 400, 501, 503) before they open.
 *
 * Next.js App Router (`app/api/trpc/[trpc]/route.ts`):
 * `const handler = createFetchHandler({ db, authenticate, endpoint: '/api/trpc' }); export { handler as GET, handler as POST };`
 */
export function createFetchHandler(options: FetchHandlerOptions): (req: Request) => Promise<Response> {
  const endpoint = options.endpoint ?? '/trpc';
  const exposeErrors = options.exposeErrors ?? false;
  const limits = options.rateLimit ? createRateLimits(options.rateLimit) : null;
  const createContext = createContextFactory({
    db: options.db,
    authenticate: options.authenticate,
    appRole: options.appRole ?? DEFAULT_APP_ROLE,
    exposeErrors,
    limits,
    live: options.live ?? null,
    subscriptionInputs: liveInputs,
  });
  const maxBodySize = options.maxBodySize ?? DEFAULT_MAX_BODY_SIZE;
  const base = endpoint.replace(/\/+$/, '');
  return async (incoming) => {
    // Only the endpoint and what is under it: tRPC's adapter would cut `endpoint.length` characters off any path.
    const pathname = new URL(incoming.url).pathname;
    if (pathname !== base && !pathname.startsWith(`${base}/`)) {
      return json(404, transportErrorBody('NOT_FOUND', 'No such route', 404));
    }
    const req = await withBoundedBody(incoming, maxBodySize);
    if (!req) return json(413, transportErrorBody('PAYLOAD_TOO_LARGE', `Request body too large (the limit is ${maxBodySize === DEFAULT_MAX_BODY_SIZE ? '1 MiB' : `${maxBodySize} bytes`})`, 413));
    const refusals = subscriptionRefusals(createContext);
    const response = await fetchRequestHandler({
      endpoint: base,
      req,
      router: appRouter,
      maxBatchSize: options.maxBatchSize ?? 50,
      allowMethodOverride: true,
      createContext: ({ req: request, resHeaders, info }) =>
        refusals.createContext({
          req: { headers: nodeHeaders(request.headers), ip: options.clientIp?.(request) },
          res: { header: (name, value) => resHeaders.set(name, value) },
          info,
        }),
      responseMeta: rateLimitResponseMeta,
      onError: ({ error, path }) => options.onError?.({ error, path, req: incoming }),
    });
    // A live stream that cannot open is answered with its own status, not tRPC's 200 with the error inside.
    const error = await refusals.refused(response);
    if (error) {
      const path = pathname.slice(base.length).replace(/^\/+/, '');
      const refusal = errorResponse(error, path, exposeErrors);
      return new Response(refusal.body, { status: refusal.status, headers: { 'content-type': 'application/json', ...retryAfter(refusal.status) } });
    }
    if (response.status === 503 && !response.headers.has('retry-after')) response.headers.set('retry-after', String(RETRY_AFTER_SECONDS));
    return response;
  };
}

/** 1 MiB, the Fastify server's bodyLimit. */
const DEFAULT_MAX_BODY_SIZE = 1024 * 1024;

function json(status: number, body: string): Response {
  return new Response(body, { status, headers: { 'content-type': 'application/json' } });
}

/**
 * The request with its body read into memory if it fits in `limit` bytes (a declared Content-Length over it is refused
 * without reading), else null. Requests without a body are returned as they are.
 */
async function withBoundedBody(req: Request, limit: number): Promise<Request | null> {
  if (!req.body) return req;
  const declared = Number(req.headers.get('content-length'));
  if (Number.isFinite(declared) && declared > limit) {
    await req.body.cancel().catch(() => {});
    return null;
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = req.body.getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => {});
      return null;
    }
    chunks.push(value);
  }
  const body = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    body.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return new Request(req.url, { method: req.method, headers: req.headers, body, signal: req.signal });
}

function retryAfter(status: number): Record<string, string> {
  return status === 503 ? { 'retry-after': String(RETRY_AFTER_SECONDS) } : {};
}
