// The HTTP server: tRPC at /trpc, the tRPC panel at /panel (outside production), /healthz and /metrics.
import { randomUUID } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import type { TRPC_ERROR_CODE_KEY } from '@trpc/server/rpc';
import { sql } from 'drizzle-orm';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import { renderTrpcPanel } from 'trpc-ui-zod4';
import { poolActivityOf, requestTimeoutOf, type Database } from '../db/client.ts';
import { withTenantTransaction } from '../db/queries/tenant-transaction.ts';
import type { Authenticator } from './auth.ts';
import { createContextFactory, rateLimitResponseMeta } from './context.ts';
import { errorResponse, isMissingPreparedStatement, RETRY_AFTER_SECONDS, transportErrorBody } from './errors.ts';
import { countedErrors, createMetrics, hasMetricsToken } from './metrics.ts';
import type { LiveHub } from './live.ts';
import { createRateLimits, type RateLimitOptions } from './rate-limit.ts';
import { appRouter, type AppRouter } from './router.ts';
import { liveInputs } from './routers/live.ts';
import { trpcRoutes, type TrpcRouteOptions } from './trpc-fastify.ts';

export interface ServerOptions {
  db: Database;
  authenticate: Authenticator;
  appRole: string;
  /** Serve the tRPC panel at /panel (never in production). */
  panel: boolean;
  /** Show internal error messages and stacks to clients (EXPOSE_ERRORS=true; local debugging only). */
  exposeErrors: boolean;
  /** pino options, or false for no logs. */
  logger?: FastifyServerOptions['logger'];
  /** Fastify's `trustProxy` (TRUST_PROXY): take the client's address from X-Forwarded-For set by these proxies. */
  trustProxy?: FastifyServerOptions['trustProxy'];
  /** Longest batch the server accepts (matches the client's maxItems). */
  maxBatchSize?: number;
  /** Serve /metrics (METRICS), behind a bearer token when `token` is set (METRICS_TOKEN); unset or false: 404. */
  metrics?: false | { token?: string };
  /** Rate limits (RATE_LIMIT_PER_MINUTE, RATE_LIMIT_PER_IP_PER_MINUTE, RATE_LIMIT_REDIS_URL); unset: none. */
  rateLimit?: RateLimitOptions;
  /** A span per procedure and per request transaction (default true; false only to measure what they cost). */
  tracing?: boolean;
  /**
   * The live-update hub onChange streams come from (server/live.ts; started by the caller). The server ends its
   * streams when it closes. Unset: onChange answers NOT_IMPLEMENTED.
   */
  live?: LiveHub | null;
}

const requestIdPattern = /^[A-Za-z0-9_.:-]{1,64}$/;

export function buildServer(options: ServerOptions) {
  // Per server, never prom-client's global registry: tests and host apps may run several servers in one process.
  const metrics = options.metrics
    ? createMetrics({
        procedures: Object.keys(appRouter._def.procedures),
        pool: () => poolActivityOf(options.db),
        tokenCache: options.authenticate.cacheStats,
        live: options.live ? () => options.live! : undefined,
      })
    : null;
  const limits = options.rateLimit ? createRateLimits(options.rateLimit) : null;
  const app = Fastify({
    logger: options.logger ?? false,
    trustProxy: options.trustProxy ?? false,
    // Malformed requests Node rejects before Fastify sees them (header too large, bad request line): answered
    // in tRPC's error shape, and logged like any other request.
    clientErrorHandler(err, socket) {
      const code = (err as NodeJS.ErrnoException).code;
      const status = code === 'HPE_HEADER_OVERFLOW' ? 431 : code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
      (this as unknown as { log: FastifyBaseLogger }).log.info(
        { statusCode: status, outcome: 'error', reason: code ?? 'client error' },
        'request rejected before routing',
      );
      if (!socket.writable || code === 'ECONNRESET') {
        socket.destroy();
        return;
      }
      const body = transportErrorBody(trpcCodeForStatus(status), transportMessage(status), status);
      socket.end(
        `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
    },
    // Fastify's own per-request lines are replaced by the single line logged in onResponse below.
    logController: new LogController({ disableRequestLogging: true }),
    // Keep a caller's request id when it looks like one, so logs can be joined across services.
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && requestIdPattern.test(given) ? given : randomUUID();
    },
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
    bodyLimit: 1024 * 1024,
    // Requests the router rejects before any route or hook runs (a malformed percent-encoding in the path, a
    // procedure path over maxParamLength): Fastify would answer them with its own text (FST_ERR_…, the path
    // echoed) and no onResponse hook, so no log line. Answered in tRPC's error shape and logged here instead.
    frameworkErrors(error, request, genericReply) {
      const reply = genericReply as unknown as FastifyReply;
      const status = error.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 414 : typeof error.statusCode === 'number' && error.statusCode >= 400 ? error.statusCode : 400;
      reply.header('x-request-id', request.id);
      reply
        .code(status)
        .type('application/json')
        .send(transportErrorBody(trpcCodeForStatus(status), transportMessage(status, error), status));
      // Routes' onResponse hooks do not run for these replies: the one line per request is written here.
      logRequest(request, status, reply.elapsedTime);
    },
  });

  // Once closing, answer in-flight requests with `Connection: close`: Fastify closes only the connections
  // idle when close() starts, and a kept-alive one would hold shutdown until its keep-alive timeout.
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
    // Live streams would hold close() for as long as their clients listen: they end now (clients reconnect).
    await options.live?.close();
  });

  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id);
    if (reply.statusCode === 503) reply.header('retry-after', String(RETRY_AFTER_SECONDS));
    if (closing) reply.header('connection', 'close');
  });

  // One line per request: no headers (so no tokens) and no inputs, just what ran and how it went.
  app.addHook('onResponse', async (request, reply) => {
    logRequest(request, reply.statusCode, reply.elapsedTime);
  });
  // A request its client abandons (a live stream closed by the browser, a cancelled call) never reaches onResponse:
  // its line has status 499 (the client closed the request, as nginx logs it).
  app.addHook('onRequestAbort', async (request) => {
    logRequest(request, CLIENT_CLOSED_REQUEST, NaN);
  });

  app.register(trpcRoutes, {
    prefix: '/trpc',
    router: appRouter,
    createContext: createContextFactory({ ...options, metrics, limits, tracing: options.tracing ?? true, subscriptionInputs: liveInputs }),
    maxBatchSize: options.maxBatchSize ?? 50,
    // Lets clients send queries as POST (long inputs); GET still works for curl and caches.
    allowMethodOverride: true,
    responseMeta: rateLimitResponseMeta,
    // A live stream that cannot open (no or bad token, the per-user cap) is refused with its HTTP status.
    subscriptionRefusal: (error, path) => errorResponse(error, path, options.exposeErrors),
    onError({ error, path, req, type }) {
      // Calls that never reached a procedure (unknown path, refused method, no context, a malformed batch); the
      // procedure middleware counted the others. An unknown path counts as `(unknown)`, never as itself.
      if (metrics && !countedErrors.has(error)) metrics.recordCall(path, error.code);
      // Expected client errors are not worth a stack trace; everything else is.
      if (error.code === 'INTERNAL_SERVER_ERROR') {
        const hint = isMissingPreparedStatement(error.cause)
          ? 'a prepared statement is missing on the server connection: behind a transaction pooler (PgBouncer) set DB_PREPARE=false'
          : undefined;
        req.log.error({ err: error.cause ?? error, procedure: path, hint }, 'procedure failed');
      } else if (type === 'subscription') {
        // A live stream ending as designed (shutdown, a slow client dropped, the token expired, a refusal): one
        // debug line, not a database warning with a stack per stream at every deploy.
        req.log.debug({ code: error.code, procedure: path }, 'live stream refused or ended');
      } else if (error.code === 'SERVICE_UNAVAILABLE') {
        req.log.warn({ err: error.cause ?? error, procedure: path }, 'database unavailable');
      } else req.log.debug({ code: error.code, procedure: path }, 'procedure rejected');
    },
  } satisfies TrpcRouteOptions<AppRouter> & { prefix: string });

  // Healthy only when a real request transaction works: a pooled connection, the role switch, the scope
  // statement and a read under RLS (a tenant that cannot exist, so it reads nothing), within HEALTH_TIMEOUT_MS.
  app.get('/healthz', async (request, reply) => {
    try {
      await withTenantTransaction(
        options.db,
        { role: options.appRole, tenantId: HEALTH_PROBE_ID, userId: HEALTH_PROBE_ID },
        (tx) => tx.execute(sql`select (select count(*) from skills where tenant_id = ${HEALTH_PROBE_ID}::uuid) + (select count(*) from user_skill_views where tenant_id = ${HEALTH_PROBE_ID}::uuid) as n`),
        { timeoutMs: Math.min(HEALTH_TIMEOUT_MS, requestTimeoutOf(options.db)) },
      );
      return { status: 'ok' };
    } catch (err) {
      request.log.error({ err }, 'health check failed');
      return reply.code(503).send({ status: 'unavailable' });
    }
  });

  if (metrics && options.metrics) {
    const token = options.metrics.token;
    app.get('/metrics', async (request, reply) => {
      if (token && !hasMetricsToken(request.headers.authorization, token)) {
        return reply
          .code(401)
          .header('www-authenticate', 'Bearer realm="metrics"')
          .type('application/json')
          .send(transportErrorBody('UNAUTHORIZED', 'Send the metrics token: Authorization: Bearer <METRICS_TOKEN>', 401));
      }
      return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics());
    });
  }

  // Every error Fastify or Node raises outside tRPC (body too large, bad content type, malformed URL, …) gets
  // tRPC's error shape, and its internal text stays out of the answer.
  app.setErrorHandler((error: FastifyError, request, reply) => {
    const status = typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode < 600 ? error.statusCode : 500;
    if (status >= 500) request.log.error({ err: error }, 'request failed');
    const code = trpcCodeForStatus(status);
    return reply
      .code(status)
      .type('application/json')
      .send(transportErrorBody(code, status >= 500 && !options.exposeErrors ? 'Internal server error' : transportMessage(status, error), status));
  });
  app.setNotFoundHandler((_request, reply) =>
    reply.code(404).type('application/json').send(transportErrorBody('NOT_FOUND', 'No such route', 404)),
  );

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

/** The status logged for a request whose client closed the connection before the answer was complete (nginx's 499). */
const CLIENT_CLOSED_REQUEST = 499;

/** A tenant and user id no row can have (the nil uuid): the health check's read finds nothing by design. */
const HEALTH_PROBE_ID = '00000000-0000-0000-0000-000000000000';
/** /healthz answers within this (ms) even when the database hangs, so a load balancer's check never times out. */
const HEALTH_TIMEOUT_MS = 1500;

/** Longest procedure path (a batch's names joined by commas) the router accepts; longer is 414. */
const MAX_PARAM_LENGTH = 5000;

/**
 * The one log line of a request: method, path (never the query string, where inputs and connectionParams with
 * tokens travel; truncated), procedure names, status, outcome and duration. Never throws, whatever the URL.
 */
function logRequest(request: FastifyRequest, statusCode: number, elapsedMs: number) {
  const path = (request.url ?? '').split('?')[0] ?? '';
  const procedures = path.startsWith('/trpc/') ? procedureNames(path.slice('/trpc/'.length)) : undefined;
  request.log.info(
    {
      method: request.method,
      path: procedures ? '/trpc' : path.slice(0, 200),
      procedures,
      statusCode,
      outcome: statusCode < 400 ? 'ok' : statusCode === 207 ? 'partial' : statusCode === CLIENT_CLOSED_REQUEST ? 'aborted' : 'error',
      durationMs: Number.isFinite(elapsedMs) ? Math.round(elapsedMs * 10) / 10 : undefined,
    },
    'request completed',
  );
}

/** The procedure names of a tRPC path (`a,b` for a batch), never throwing: a malformed URL still gets its log line. */
function procedureNames(raw: string): string[] {
  let decoded = raw;
  try {
    decoded = decodeURIComponent(raw);
  } catch {
    // keep it raw
  }
  return decoded.split(',').map((name) => name.slice(0, 100)).slice(0, 60);
}

function trpcCodeForStatus(status: number): TRPC_ERROR_CODE_KEY {
  switch (status) {
    case 401: return 'UNAUTHORIZED';
    case 403: return 'FORBIDDEN';
    case 404: return 'NOT_FOUND';
    case 405: return 'METHOD_NOT_SUPPORTED';
    case 408: return 'TIMEOUT';
    case 413: return 'PAYLOAD_TOO_LARGE';
    case 415: return 'UNSUPPORTED_MEDIA_TYPE';
    case 429: return 'TOO_MANY_REQUESTS';
    case 503: return 'SERVICE_UNAVAILABLE';
    default: return status >= 500 ? 'INTERNAL_SERVER_ERROR' : 'BAD_REQUEST';
  }
}

/** A message for a transport error, from its status alone (Fastify's and Node's texts are not for clients). */
function transportMessage(status: number, error?: FastifyError): string {
  switch (status) {
    case 413: return 'Request body too large (the limit is 1 MiB)';
    case 414: return `Procedure path too long (the limit is ${MAX_PARAM_LENGTH} characters): send fewer calls per batch`;
    case 415: return 'Unsupported content type: send application/json';
    case 431: return 'Request headers or URL too large (Node allows 16 KiB): send long inputs as POST';
    case 408: return 'Request timed out';
    default:
      if (error?.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') return 'Empty JSON body';
      if (error?.code === 'FST_ERR_BAD_URL') return 'Malformed URL: invalid percent-encoding in the path';
      return STATUS_CODES[status] ?? 'Bad request';
  }
}
