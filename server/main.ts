// `npm start`: migrate, check that RLS cannot be bypassed, seed the embedded demo, serve, shut down gracefully.
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyServerOptions } from 'fastify';
import type { Redis } from 'ioredis';
import { createDb, type Database, type DbHandle } from '../db/client.ts';
import { migrate, MigrationError } from '../db/migrate.ts';
import { ListenUnheardError } from '../db/notifications.ts';
import { DataDirLockedError } from '../db/pglite-lock.ts';
import { pruneExpiredViews, RETENTION_INTERVAL_MS } from '../db/retention.ts';
import { seedDemo, type DemoUser } from '../db/seed.ts';
import { buildServer } from './app.ts';
import { createJwtAuthenticator, signToken, type Authenticator } from './auth.ts';
import { loadConfigOrReport, type Config } from './config.ts';
import { LiveHub } from './live.ts';
import { heartbeatMs } from './trpc.ts';
import { assertRlsEnforced, UnsafeDatabaseError } from './startup-check.ts';

export interface StartOptions {
  /** Replace the JWT authenticator (host apps with their own sessions). */
  authenticate?: Authenticator;
  logger?: FastifyServerOptions['logger'];
}

export interface RunningServer {
  url: string;
  engine: DbHandle['engine'];
  /**
   * The server's database (request transactions switch to the app role themselves; statements run on it directly
   * run as the login role, on PGlite the owner): for tests and host code that edit the catalogue.
   */
  db: Database;
  /** The live-update hub (null with LIVE_UPDATES=false). */
  live: LiveHub | null;
  /** Demo users with ready-to-use bearer tokens (development, embedded database only). */
  demoTokens: (DemoUser & { token: string })[];
  close: () => Promise<void>;
}

/** Outside production a missing AUTH_SECRET gets a random one kept beside the embedded data, so tokens survive restarts. */
export async function resolveAuthSecret(config: Config): Promise<string> {
  if (config.AUTH_SECRET) return config.AUTH_SECRET;
  const file = path.join(path.dirname(path.resolve(config.PGLITE_DIR)), 'dev-auth-secret');
  try {
    const existing = (await readFile(file, 'utf8')).trim();
    if (existing.length >= 32) return existing;
  } catch {
    // first start
  }
  const secret = randomBytes(32).toString('base64url');
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, `${secret}\n`, { mode: 0o600 });
  return secret;
}

export async function start(config: Config, options: StartOptions = {}): Promise<RunningServer> {
  let redis: Redis | null = null;
  let live: LiveHub | null = null;
  const embedded = !config.DATABASE_URL;
  if (embedded) await mkdir(path.resolve(config.PGLITE_DIR), { recursive: true });
  const handle = config.DATABASE_URL
    ? createDb({
        url: config.DATABASE_URL,
        poolSize: config.DB_POOL_SIZE,
        prepare: config.DB_PREPARE,
        requestTimeoutMs: config.REQUEST_TIMEOUT_MS,
      })
    : createDb({ pgliteDir: config.PGLITE_DIR, requestTimeoutMs: config.REQUEST_TIMEOUT_MS });
  try {
    if (config.MIGRATE_ON_START || embedded) {
      await migrate(handle, { appRole: config.DB_APP_ROLE, url: config.DATABASE_DIRECT_URL });
    }
    await assertRlsEnforced(handle.db, config.DB_APP_ROLE);
    const demo = embedded ? await seedDemo(handle.db) : null;
    const secret = await resolveAuthSecret(config);
    redis = config.RATE_LIMIT_REDIS_URL ? await connectRedis(config.RATE_LIMIT_REDIS_URL) : null;
    if (config.LIVE_UPDATES) {
      live = new LiveHub({
        db: handle.db,
        appRole: config.DB_APP_ROLE,
        streamsPerUser: config.LIVE_STREAMS_PER_USER,
        maxStreams: config.LIVE_MAX_STREAMS,
        // Re-checks share the pool with requests: at most half of it.
        checkConcurrency: Math.max(1, Math.floor(config.DB_POOL_SIZE / 2)),
      });
      // LISTEN needs a session of its own: DATABASE_DIRECT_URL (a transaction pooler cannot carry it).
      await live.start(handle, { url: config.DATABASE_DIRECT_URL });
    }
    const app = buildServer({
      db: handle.db,
      authenticate: options.authenticate ?? createJwtAuthenticator({ secret, db: handle.db, appRole: config.DB_APP_ROLE }),
      appRole: config.DB_APP_ROLE,
      panel: config.NODE_ENV !== 'production',
      exposeErrors: config.EXPOSE_ERRORS,
      logger: options.logger ?? { level: config.LOG_LEVEL, redact: ['req.headers.authorization'] },
      metrics: config.METRICS && { token: config.METRICS_TOKEN },
      trustProxy: config.TRUST_PROXY,
      rateLimit: {
        perMinute: config.RATE_LIMIT_PER_MINUTE,
        perIpPerMinute: config.RATE_LIMIT_PER_IP_PER_MINUTE,
        ...(redis ? { redis } : {}),
      },
      live,
    });
    live?.setLog(app.log);
    if (config.LIVE_HEARTBEAT_MS !== heartbeatMs) {
      app.log.warn(
        { configured: config.LIVE_HEARTBEAT_MS, inEffect: heartbeatMs },
        'LIVE_HEARTBEAT_MS is read from the environment when server/trpc.ts loads: set it there, not only in the config passed to start()',
      );
    }
    const address = await app.listen({ port: config.PORT, host: config.HOST });
    const retention = config.VIEW_RETENTION_DAYS
      ? scheduleRetention(handle, config.VIEW_RETENTION_DAYS, config.DATABASE_DIRECT_URL, app.log)
      : null;
    const demoTokens =
      demo && config.NODE_ENV !== 'production'
        ? await Promise.all(demo.users.map(async (u) => ({ ...u, token: await signToken(u, secret, '7d') })))
        : [];
    let closing: Promise<void> | undefined;
    return {
      url: address,
      engine: handle.engine,
      db: handle.db,
      live,
      demoTokens,
      close: () =>
        (closing ??= (async () => {
          await retention?.stop();
          await app.close(); // ends live streams, stops accepting and waits for in-flight requests
          await handle.close();
          redis?.disconnect();
        })()),
    };
  } catch (err) {
    await live?.close();
    await handle.close();
    redis?.disconnect();
    throw err;
  }
}

/**
 * The rate limiter's Redis client (ioredis, loaded only when RATE_LIMIT_REDIS_URL is set). Commands fail at once
 * while it is disconnected (no offline queue), so the limiter falls back to its per-process insurance limiter
 * instead of making requests wait; it reconnects on its own. Start-up waits for the first connection.
 */
export async function connectRedis(url: string): Promise<Redis> {
  const { Redis } = await import('ioredis');
  // commandTimeout: a Redis that stops answering (overloaded, partitioned, failing over without a reset) rejects the
  // command in 250 ms, and the in-memory insurance limiter answers instead; without it every request would hang.
  const client = new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    lazyConnect: true,
    connectTimeout: 5_000,
    commandTimeout: 250,
  });
  client.on('error', () => {}); // reconnects by itself; the limiter's insurance covers the gap
  try {
    await client.connect();
  } catch (err) {
    client.disconnect();
    const { hostname, port } = new URL(url); // never the password
    throw new RedisUnavailableError(`RATE_LIMIT_REDIS_URL: cannot connect to Redis at ${hostname}:${port || 6379} (${(err as Error).message})`);
  }
  return client;
}

export class RedisUnavailableError extends Error {
  override name = 'RedisUnavailableError';
}

/**
 * VIEW_RETENTION_DAYS: prunes expired view rows now and then once a day (db/retention.ts), as the owner
 * (DATABASE_DIRECT_URL, else DATABASE_URL). Several processes may do this; one prunes at a time and the others
 * skip. A failure is logged, never fatal; `stop()` cancels the schedule and waits for a run in progress.
 */
function scheduleRetention(
  handle: DbHandle,
  days: number,
  url: string | undefined,
  log: { info: (obj: object, msg: string) => void; error: (obj: object, msg: string) => void },
) {
  let running: Promise<void> | null = null;
  const run = () => {
    running ??= pruneExpiredViews(handle, { days, url })
      .then(
        (result) => log.info({ retentionDays: days, ...result }, 'view retention'),
        (err: unknown) => log.error({ err }, 'view retention failed'),
      )
      .finally(() => {
        running = null;
      });
  };
  const first = setTimeout(run, 1_000);
  const daily = setInterval(run, RETENTION_INTERVAL_MS);
  first.unref();
  daily.unref();
  return {
    stop: async () => {
      clearTimeout(first);
      clearInterval(daily);
      await running;
    },
  };
}

async function main() {
  const config = loadConfigOrReport();
  if (!config) process.exit(1);
  let server: RunningServer;
  try {
    server = await start(config);
  } catch (err) {
    if (err instanceof UnsafeDatabaseError || err instanceof DataDirLockedError || err instanceof MigrationError || err instanceof RedisUnavailableError || err instanceof ListenUnheardError) {
      console.error(err.message);
      process.exit(1);
    }
    throw err;
  }
  const lines = [
    '',
    `skill-views is listening on ${server.url} (${server.engine === 'pglite' ? `embedded PGlite in ${config.PGLITE_DIR}` : 'PostgreSQL'})`,
    `  tRPC:    ${server.url}/trpc`,
    `  health:  ${server.url}/healthz`,
  ];
  if (config.METRICS) lines.push(`  metrics: ${server.url}/metrics${config.METRICS_TOKEN ? ' (bearer METRICS_TOKEN)' : ''}`);
  if (config.NODE_ENV !== 'production') lines.push(`  panel:   ${server.url}/panel`);
  if (config.NODE_ENV === 'production' && config.METRICS && !config.METRICS_TOKEN) {
    lines.push('', 'Warning: METRICS=true without METRICS_TOKEN serves /metrics to anyone who can reach this port.');
  }
  if (server.demoTokens.length > 0) {
    lines.push('', 'Demo bearer tokens (valid 7 days):');
    for (const u of server.demoTokens) lines.push(`  ${u.name} <${u.email}>, ${u.tenantName}:`, `    Bearer ${u.token}`);
    const first = server.demoTokens[0];
    if (first) {
      lines.push(
        '',
        'Try it:',
        `  curl -s -H 'Authorization: Bearer ${first.token}' '${server.url}/trpc/whatsNew?input=${encodeURIComponent('{"json":{"limit":3}}')}'`,
      );
    }
  }
  console.log(lines.join('\n') + '\n');

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`${signal} received: finishing in-flight requests, then closing the database`);
    // In-flight requests end within two time limits (the request's, then at most one more for a COMMIT in
    // flight); closing the pool takes up to 5 s more.
    const budgetMs = Math.max(10_000, 2 * config.REQUEST_TIMEOUT_MS + 5_000);
    const force = setTimeout(() => {
      console.error(`shutdown took longer than ${budgetMs / 1000}s; exiting`);
      process.exit(1);
    }, budgetMs);
    force.unref();
    server.close().then(
      () => process.exit(0),
      (err) => {
        console.error(err);
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  await main();
}
