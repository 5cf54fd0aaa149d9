// tRPC on Fastify: tRPC's own request resolution (resolveResponse), with JSON answers sent as one buffered body.
import type { AnyRouter, TRPCError } from '@trpc/server';
import { incomingMessageToRequest } from '@trpc/server/adapters/node-http';
import { resolveResponse, type HTTPErrorHandler, type ResolveHTTPRequestOptionsContextFn, type ResponseMetaFn } from '@trpc/server/http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { subscriptionRefusals } from './errors.ts';

export interface TrpcRouteOptions<TRouter extends AnyRouter> {
  router: TRouter;
  /** Builds the context from the Fastify request. */
  createContext: (
    opts: { req: FastifyRequest; res: FastifyReply } & Parameters<ResolveHTTPRequestOptionsContextFn<TRouter>>[0],
  ) => ReturnType<ResolveHTTPRequestOptionsContextFn<TRouter>>;
  onError?: (opts: Omit<Parameters<HTTPErrorHandler<TRouter, Request>>[0], 'req'> & { req: FastifyRequest }) => void;
  /** Status and headers from the context and outcome (tRPC's responseMeta). */
  responseMeta?: ResponseMetaFn<TRouter>;
  maxBatchSize?: number;
  allowMethodOverride?: boolean;
  /**
   * The answer to a subscription whose context could not be made (createContext threw: no session, a stream limit).
   * tRPC would open the event stream anyway (200) and put the error inside it; this answers with the error's own
   * HTTP status and body instead, before any stream opens. Unset: tRPC's behaviour.
   */
  subscriptionRefusal?: (error: TRPCError, path: string) => { status: number; body: string };
}

/**
 * Registers `/:path` (under the plugin's prefix) for tRPC. It does what `fastifyTRPCPlugin` from
 * `@trpc/server/adapters/fastify` does (request → fetch Request → `resolveResponse`), except for the answer:
 * the official plugin hands Fastify the fetch Response, whose body Fastify then pipes from a web stream as
 * a chunked reply; here a JSON answer (every answer of this app's procedures) is read once and sent with a
 * Content-Length, which measured cheaper per call (BENCHMARKS.md). Anything else (streams, event streams)
 * is still passed through as the Response.
 */
export function trpcRoutes<TRouter extends AnyRouter>(app: FastifyInstance, options: TrpcRouteOptions<TRouter>, done: (err?: Error) => void) {
  // tRPC parses bodies itself: keep them as strings (as the official plugin does).
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, parsed) => parsed(null, body));

  app.all<{ Params: { path: string } }>('/:path', async (req, reply) => {
    // As the official plugin does: hand tRPC the body Fastify has already read (a string, or undefined).
    const incoming = req.raw as typeof req.raw & { body?: unknown };
    incoming.body = req.body;
    const request = incomingMessageToRequest(incoming, reply.raw, { maxBodySize: null });
    const refusals = subscriptionRefusals(options.createContext);
    const response = await resolveResponse<TRouter>({
      router: options.router,
      req: request,
      path: req.params.path,
      error: null,
      maxBatchSize: options.maxBatchSize,
      allowMethodOverride: options.allowMethodOverride,
      createContext: (opts) => refusals.createContext({ ...opts, req, res: reply }),
      onError: options.onError ? (o) => options.onError!({ ...o, req }) : undefined,
      responseMeta: options.responseMeta,
    });
    // tRPC has reported the error to onError already (the call failed on the missing context).
    const error = options.subscriptionRefusal ? await refusals.refused(response) : null;
    if (error) {
      const refusal = options.subscriptionRefusal!(error, req.params.path);
      return reply.code(refusal.status).type('application/json').send(refusal.body);
    }
    reply.code(response.status);
    for (const [name, value] of response.headers) reply.header(name, value);
    if (response.body && response.headers.get('content-type')?.startsWith('application/json')) {
      return reply.send(await response.text());
    }
    return reply.send(response);
  });
  done();
}
