// Configuration: parsed once from the environment with zod; a bad value stops start-up naming the variable.
import { isIP } from 'node:net';
import { z } from 'zod';

const roleName = /^[a-z_][a-z0-9_$]{0,62}$/;

/** An IP address or CIDR (`10.0.0.0/8`, `fd00::/8`), as proxy-addr takes them. */
function isProxyAddress(value: string): boolean {
  const [address, bits, ...rest] = value.split('/');
  if (rest.length > 0 || !address) return false;
  const family = isIP(address);
  if (family === 0) return false;
  return bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128));
}

const emptyAsUndefined = (v: unknown) => (typeof v === 'string' && v.trim() === '' ? undefined : v);

const postgresUrl = z
  .string()
  .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// or postgresql:// URL');

/** `true`/`false` (also 1/0, yes/no, on/off), case-insensitive; anything else is an error naming the variable. */
const flag = (fallback: boolean) =>
  z.preprocess(
    (v) => (typeof v === 'string' ? emptyAsUndefined(v.trim().toLowerCase()) : v),
    z
      .enum(['true', 'false', '1', '0', 'yes', 'no', 'on', 'off'], { message: 'must be true or false' })
      .default(fallback ? 'true' : 'false')
      .transform((v) => v === 'true' || v === '1' || v === 'yes' || v === 'on'),
  );

/** A flag without a default: undefined when unset, so the default can depend on another variable. */
const optionalFlag = z.preprocess(
  (v) => (typeof v === 'string' ? emptyAsUndefined(v.trim().toLowerCase()) : v),
  z
    .enum(['true', 'false', '1', '0', 'yes', 'no', 'on', 'off'], { message: 'must be true or false' })
    .optional()
    .transform((v) => (v === undefined ? undefined : v === 'true' || v === '1' || v === 'yes' || v === 'on')),
);

/** VIEW_RETENTION_DAYS (and `npm run db:prune -- --days N`): whole days, 1 to 36500; unset: keep forever. */
export const retentionDays = z.preprocess(emptyAsUndefined, z.coerce.number().int().min(1).max(36_500).optional());

/**
 * LIVE_HEARTBEAT_MS: how often, in ms, an open live stream gets an SSE ping (1000 to 300000, default 15000); the
 * client reconnects after three missed. Read once when server/trpc.ts loads (tRPC takes it at initialisation).
 */
export const liveHeartbeatMs = z.preprocess(emptyAsUndefined, z.coerce.number().int().min(1000).max(300_000).default(15_000));

export const configSchema = z
  .object({
    NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
    DATABASE_URL: z.preprocess(emptyAsUndefined, postgresUrl.optional()),
    /** A session-mode connection (not through a transaction pooler) for migrations; defaults to DATABASE_URL. */
    DATABASE_DIRECT_URL: z.preprocess(emptyAsUndefined, postgresUrl.optional()),
    /** Apply pending migrations at start (default true); `npm run db:migrate` runs them otherwise. */
    MIGRATE_ON_START: flag(true),
    /** Named prepared statements (default true); false behind a transaction-mode pooler such as PgBouncer. */
    DB_PREPARE: flag(true),
    /** Longest wait, in milliseconds, for a pooled connection and for each statement; past it, 503. */
    REQUEST_TIMEOUT_MS: z.preprocess(emptyAsUndefined, z.coerce.number().int().min(100).max(600_000).default(10_000)),
    /** Send internal error details (messages, stacks) to clients; for local debugging only. */
    EXPOSE_ERRORS: flag(false),
    PGLITE_DIR: z.preprocess(emptyAsUndefined, z.string().default('.data/pglite')),
    PORT: z.preprocess(emptyAsUndefined, z.coerce.number().int().min(0).max(65535).default(3000)),
    HOST: z.preprocess(emptyAsUndefined, z.string().default('127.0.0.1')),
    AUTH_SECRET: z.preprocess(
      emptyAsUndefined,
      z.string().min(32, 'must be at least 32 characters (HS256 key)').optional(),
    ),
    DB_APP_ROLE: z.preprocess(
      emptyAsUndefined,
      z.string().regex(roleName, 'must be a lower-case Postgres role name').default('skillviews_app'),
    ),
    DB_POOL_SIZE: z.preprocess(emptyAsUndefined, z.coerce.number().int().min(1).max(100).default(10)),
    /** Delete view rows not refreshed for this many days, once a day (unset: keep them forever). */
    VIEW_RETENTION_DAYS: retentionDays,
    /** Serve Prometheus metrics at /metrics (default true outside production, false in production). */
    METRICS: optionalFlag,
    /** When set, /metrics needs `Authorization: Bearer <METRICS_TOKEN>` (else 401). */
    METRICS_TOKEN: z.preprocess(emptyAsUndefined, z.string().min(16, 'must be at least 16 characters').regex(/^\S+$/, 'must not contain spaces').optional()),
    /** Calls per tenant and user per minute, each call of a batch counted; past it 429 TOO_MANY_REQUESTS. 0: no limit. */
    RATE_LIMIT_PER_MINUTE: z.preprocess(emptyAsUndefined, z.coerce.number().int().min(0).max(1_000_000).default(1200)),
    /** Failed authentications per client IP per minute, checked before a token is verified. 0: no limit. */
    /**
     * Behind a reverse proxy or load balancer: `true` (trust every hop) or a comma-separated list of the proxies'
     * addresses or CIDRs (Fastify's trustProxy), so the per-IP limit sees clients, not the proxy. Default off.
     */
    TRUST_PROXY: z.preprocess(
      emptyAsUndefined,
      z
        .string()
        .optional()
        .transform((v): boolean | string[] =>
          v === undefined || v === 'false' ? false : v === 'true' ? true : v.split(',').map((a) => a.trim()),
        )
        .refine((v) => typeof v === 'boolean' || v.every(isProxyAddress), 'must be true, false or a list of proxy addresses/CIDRs'),
    ),
    RATE_LIMIT_PER_IP_PER_MINUTE: z.preprocess(emptyAsUndefined, z.coerce.number().int().min(0).max(1_000_000).default(60)),
    /** A Redis server the rate-limit counters are shared through (several processes); unset: per-process memory. */
    RATE_LIMIT_REDIS_URL: z.preprocess(emptyAsUndefined, z.string().regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL').optional()),
    /** Serve the onChange live stream (default true); false: onChange answers NOT_IMPLEMENTED and nothing listens. */
    LIVE_UPDATES: flag(true),
    /** Open live streams per user per server process (default 5); the next is refused with 429 TOO_MANY_REQUESTS. */
    LIVE_STREAMS_PER_USER: z.preprocess(emptyAsUndefined, z.coerce.number().int().min(1).max(1000).default(5)),
    /** Open live streams per server process (default 10000); past it 503 SERVICE_UNAVAILABLE. */
    LIVE_MAX_STREAMS: z.preprocess(emptyAsUndefined, z.coerce.number().int().min(1).max(1_000_000).default(10_000)),
    LIVE_HEARTBEAT_MS: liveHeartbeatMs,
    LOG_LEVEL: z.preprocess(
      emptyAsUndefined,
      z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    ),
  })
  .superRefine((c, ctx) => {
    if (c.DATABASE_DIRECT_URL && !c.DATABASE_URL) {
      ctx.addIssue({ code: 'custom', path: ['DATABASE_DIRECT_URL'], message: 'needs DATABASE_URL as well' });
    }
    if (c.NODE_ENV === 'production' && !c.AUTH_SECRET) {
      ctx.addIssue({ code: 'custom', path: ['AUTH_SECRET'], message: 'is required when NODE_ENV=production' });
    }
  })
  .transform((c) => ({ ...c, METRICS: c.METRICS ?? c.NODE_ENV !== 'production' }));

export type Config = z.infer<typeof configSchema>;

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Parses configuration from `env`; throws a ConfigError naming every bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = configSchema.safeParse(env);
  if (parsed.success) return parsed.data;
  const lines = parsed.error.issues.map((i) => `  ${i.path.join('.') || '(config)'}: ${i.message}`);
  throw new ConfigError(`Invalid configuration:\n${lines.join('\n')}`);
}

/**
 * For command-line entry points (npm start, db:migrate, db:prune, token): the configuration, or null after printing
 * the ConfigError's message (naming every bad variable) to stderr, so the caller exits 1 without a stack.
 */
export function loadConfigOrReport(env: NodeJS.ProcessEnv = process.env): Config | null {
  try {
    return loadConfig(env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    console.error(err.message);
    return null;
  }
}
