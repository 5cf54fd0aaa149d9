// The HTTP server: tRPC at /trpc, the tRPC panel at /panel (outside production), and /healthz.
import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import Fastify, { LogController, type FastifyServerOptions } from 'fastify';
import { renderTrpcPanel } from 'trpc-ui-zod4';
import type { Database } from '../db/client.ts';
import type { Authenticator } from './auth.ts';
import { createContextFactory } from './context.ts';
import { appRouter, type AppRouter } from './router.ts';
import { trpcRoutes, type TrpcRouteOptions } from './trpc-fastify.ts';

export interface ServerOptions {
  db: Database;
  authenticate: Authenticator;
  appRole: string;
  /** Serve the tRPC panel at /panel (never in production). */
  panel: boolean;
  /** Show internal error messages and stacks to clients (development only). */
  exposeErrors: boolean;
  /** pino options, or false for no logs. */
  logger?: FastifyServerOptions['logger'];
  /** Longest batch the server accepts (matches the client's maxItems). */
  maxBatchSize?: number;
}

const requestIdPattern = /^[A-Za-z0-9_.:-]{1,64}$/;

export function buildServer(options: ServerOptions) {
  const app = Fastify({
    logger: options.logger ?? false,
    // Fastify's own per-request lines are replaced by the single line logged in onResponse below.
    logController: new LogController({ disableRequestLogging: true }),
    // Keep a caller's request id when it looks like one, so logs can be joined across services.
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && requestIdPattern.test(given) ? given : randomUUID();
    },
    routerOptions: { maxParamLength: 5000 },
    bodyLimit: 1024 * 1024,
  });

  // Once closing, answer in-flight requests with `Connection: close`: Fastify closes only the connections
  // idle when close() starts, and a kept-alive one would hold shutdown until its keep-alive timeout.
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });

  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id);
    if (closing) reply.header('connection', 'close');
  });

  // One line per request: no headers (so no tokens) and no inputs, just what ran and how it went.
  app.addHook('onResponse', async (request, reply) => {
    const path = request.url.split('?')[0] ?? '';
    const procedures = path.startsWith('/trpc/') ? decodeURIComponent(path.slice('/trpc/'.length)).split(',') : undefined;
    const statusCode = reply.statusCode;
    request.log.info(
      {
        method: request.method,
        path: procedures ? '/trpc' : path,
        procedures,
        statusCode,
        outcome: statusCode < 400 ? 'ok' : statusCode === 207 ? 'partial' : 'error',
        durationMs: Math.round(reply.elapsedTime * 10) / 10,
      },
      'request completed',
    );
  });

  app.register(trpcRoutes, {
    prefix: '/trpc',
    router: appRouter,
    createContext: createContextFactory(options),
    maxBatchSize: options.maxBatchSize ?? 50,
    // Lets clients send queries as POST (long inputs); GET still works for curl and caches.
    allowMethodOverride: true,
    onError({ error, path, req }) {
      // Expected client errors are not worth a stack trace; everything else is.
      if (error.code === 'INTERNAL_SERVER_ERROR') req.log.error({ err: error.cause ?? error, procedure: path }, 'procedure failed');
      else req.log.debug({ code: error.code, procedure: path }, 'procedure rejected');
    },
  } satisfies TrpcRouteOptions<AppRouter> & { prefix: string });

  app.get('/healthz', async (_request, reply) => {
    try {
      await options.db.execute(sql`select 1`);
      return { status: 'ok' };
    } catch (err) {
      app.log.error({ err }, 'health check failed');
      return reply.code(503).send({ status: 'unavailable' });
    }
  });

  if (options.panel) {
    let html: string | undefined;
    app.get('/panel', async (_request, reply) => {
      html ??= renderTrpcPanel(appRouter, {
        url: '/trpc',
        transformer: 'superjson',
        meta: {
          title: 'skill-views',
          description:
            'Every procedure needs a session: open "Headers", add Authorization with the value "Bearer <token>" (the server prints demo tokens at start-up).',
        },
      });
      return reply.type('text/html; charset=utf-8').send(html);
    });
  }

  return app;
}
