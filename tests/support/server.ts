// HTTP test servers: the real app (buildServer + JWT auth) on a random port, small apps for test-only routers, raw calls.
import type { AnyRouter } from '@trpc/server';
import Fastify from 'fastify';
import { SignJWT } from 'jose';
import { createClient, type SkillViewsClient } from '../../client/index.ts';
import type { Database, DbHandle } from '../../db/client.ts';
import { buildServer, type ServerOptions } from '../../server/app.ts';
import { createJwtAuthenticator, secretKey, signToken, type Authenticator } from '../../server/auth.ts';
import { createContextInner, type Context } from '../../server/context.ts';
import type { Session } from '../../server/session.ts';
import { LiveHub, type LiveHubOptions } from '../../server/live.ts';
import type { ListenerOptions } from '../../db/notifications.ts';
import { trpcRoutes } from '../../server/trpc-fastify.ts';
import type { TestEngine } from './engines.ts';
import { APP_ROLE } from './factory.ts';

/** HS256 key the test servers verify with (AUTH_SECRET needs 32+ characters). */
export const TEST_SECRET = 'skill-views-test-secret-0123456789abcdef';

/** A valid bearer token for `session`, signed with TEST_SECRET (or `secret`). */
export function tokenFor(session: Session, { secret = TEST_SECRET, expiresIn = '1h' as string | number } = {}): Promise<string> {
  return signToken(session, secret, expiresIn);
}

/** A token with arbitrary claims and header, for the cases signToken refuses to make. */
export async function craftToken(
  claims: Record<string, unknown>,
  { alg = 'HS256', secret = TEST_SECRET }: { alg?: 'HS256' | 'HS384' | 'HS512'; secret?: string } = {},
): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg, typ: 'JWT' }).sign(secretKey(secret));
}

/** An unsigned (`alg: none`) token: header.payload. with an empty signature. */
export function unsignedToken(claims: Record<string, unknown>): string {
  const part = (v: unknown) => Buffer.from(JSON.stringify(v), 'utf8').toString('base64url');
  return `${part({ alg: 'none', typ: 'JWT' })}.${part(claims)}.`;
}

export interface TestServer {
  /** http://127.0.0.1:<port> */
  url: string;
  /** The tRPC endpoint: `${url}/trpc`. */
  trpcUrl: string;
  db: Database;
  /** The live-update hub (when started with `live`). */
  live: LiveHub | null;
  /** A typed client sending a valid token for `session` (or none when null). */
  client: (session: Session | null, options?: { fetch?: typeof globalThis.fetch }) => SkillViewsClient;
  close: () => Promise<void>;
}

export interface TestServerOptions {
  /** Show internal messages and stacks (development); default false, as in production. */
  exposeErrors?: boolean;
  panel?: boolean;
  appRole?: string;
  /** Replaces the JWT authenticator. */
  authenticate?: Authenticator;
  /** Fastify/pino logger options; default no logs. */
  logger?: ServerOptions['logger'];
  /** /metrics (default off) and its token. */
  metrics?: ServerOptions['metrics'];
  /** Rate limits (default none). */
  rateLimit?: ServerOptions['rateLimit'];
  /** Live updates: a LiveHub listening on the server's database, with these options (default none). */
  live?: Partial<Omit<LiveHubOptions, 'db' | 'appRole'>> & { listen?: ListenerOptions };
}

/**
 * The real Fastify app from server/app.ts with the JWT authenticator, listening on a random port.
 * Uses `handle` (not closed by close()) or opens a fresh database on `engine`.
 */
export async function startTestServer(
  engine: TestEngine,
  options: TestServerOptions & { handle?: DbHandle } = {},
): Promise<TestServer> {
  const handle = options.handle ?? (await engine.open());
  const appRole = options.appRole ?? APP_ROLE;
  let live: LiveHub | null = null;
  if (options.live) {
    const { listen, ...hubOptions } = options.live;
    live = new LiveHub({ db: handle.db, appRole, ...hubOptions });
    await live.start(handle, listen);
  }
  const app = buildServer({
    db: handle.db,
    authenticate: options.authenticate ?? createJwtAuthenticator({ secret: TEST_SECRET, db: handle.db, appRole }),
    appRole,
    panel: options.panel ?? false,
    exposeErrors: options.exposeErrors ?? false,
    logger: options.logger ?? false,
    ...(options.metrics ? { metrics: options.metrics } : {}),
    ...(options.rateLimit ? { rateLimit: options.rateLimit } : {}),
    live,
  });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  const trpcUrl = `${url}/trpc`;
  return {
    url,
    trpcUrl,
    db: handle.db,
    live,
    client: (session, clientOptions = {}) =>
      createClient({
        url: trpcUrl,
        getToken: session ? () => tokenFor(session) : undefined,
        ...(clientOptions.fetch ? { fetch: clientOptions.fetch } : {}),
      }),
    close: async () => {
      await app.close();
      if (!options.handle) await handle.close();
    },
  };
}

/** A minimal Fastify app serving a test-only router at /trpc with a fixed context (no auth). */
export async function startRouterServer(
  router: AnyRouter,
  context: Parameters<typeof createContextInner>[0],
): Promise<{ url: string; close: () => Promise<void> }> {
  const app = Fastify({ logger: false });
  await app.register(trpcRoutes, { prefix: '/trpc', router, createContext: async (): Promise<Context> => createContextInner(context) });
  const address = await app.listen({ port: 0, host: '127.0.0.1' });
  return { url: `${address}/trpc`, close: () => app.close() };
}

export interface RawResponse {
  status: number;
  text: string;
  /** Parsed JSON body (superjson envelope: `{ result: { data: { json } } }` or `{ error: { json } }`). */
  body: any;
}

/**
 * One unbatched tRPC call over plain fetch: GET for queries, POST for mutations. `input` is sent in
 * the superjson envelope unchanged, so any JSON value (however wrong) reaches the server. Keep GET
 * inputs small: Node refuses request lines over 16 KiB (431) before tRPC sees them.
 */
export async function rawCall(
  trpcUrl: string,
  path: string,
  {
    method = 'GET',
    input,
    authorization,
    token,
  }: { method?: 'GET' | 'POST'; input?: unknown; authorization?: string; token?: string } = {},
): Promise<RawResponse> {
  const headers: Record<string, string> = {};
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  if (authorization !== undefined) headers.authorization = authorization;
  const envelope = input === undefined ? undefined : JSON.stringify({ json: input });
  let response: Response;
  if (method === 'GET') {
    const query = envelope === undefined ? '' : `?input=${encodeURIComponent(envelope)}`;
    response = await fetch(`${trpcUrl}/${path}${query}`, { headers });
  } else {
    headers['content-type'] = 'application/json';
    // `{}` is superjson's envelope for an undefined input (what the client sends for a missing one).
    response = await fetch(`${trpcUrl}/${path}`, { method: 'POST', headers, body: envelope ?? '{}' });
  }
  const text = await response.text();
  let body: any = null;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON; callers look at status and text
  }
  return { status: response.status, text, body };
}

/** The error object of a raw tRPC error response (`{ message, code, data }`). */
export function errorOf(res: RawResponse): { message: string; code: number; data: Record<string, any> } {
  const error = res.body?.error?.json;
  if (!error) throw new Error(`expected a tRPC error response, got ${res.status}: ${res.text.slice(0, 300)}`);
  return error;
}
