// Prometheus metrics with prom-client, one registry per server: calls by procedure and code, durations, pool, token cache, process.
import { timingSafeEqual } from 'node:crypto';
import { TRPC_ERROR_CODES_BY_KEY } from '@trpc/server/rpc';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { PoolActivity } from '../db/client.ts';

/** The `procedure` label of a call whose path names no procedure: clients choose paths, so they never become labels. */
export const UNKNOWN_PROCEDURE = '(unknown)';
/** The `code` label of a call that succeeded (the others are tRPC error codes). */
export const OK_CODE = 'OK';

export interface MetricsSources {
  /** Every procedure path of the router: the only values the `procedure` label takes besides UNKNOWN_PROCEDURE. */
  procedures: readonly string[];
  /** Live pool counters (db/client.ts poolActivityOf). */
  pool?: () => Readonly<PoolActivity> | undefined;
  /** Token-cache lookups so far (the authenticator's cacheStats). */
  tokenCache?: () => { hits: number; misses: number };
  /** The live-update hub's open streams and tallies (server/live.ts). */
  live?: () => { streams: number; listening: boolean; stats: Readonly<Record<LiveTally, number>> };
}

type LiveTally = 'delivered' | 'resyncs' | 'dropped' | 'notifications' | 'reconnects' | 'checkFailures';

export type Metrics = ReturnType<typeof createMetrics>;

/** Errors the procedure middleware has counted already: tRPC's onError, which counts the rest, skips them. */
export const countedErrors = new WeakSet<object>();

const codes = new Set<string>([OK_CODE, ...Object.keys(TRPC_ERROR_CODES_BY_KEY)]);

/**
 * A registry of its own (never prom-client's global one: several servers may run in one process) with the
 * `skillviews_` families and prom-client's process metrics under the same prefix.
 */
export function createMetrics(sources: MetricsSources) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'skillviews_' });
  const known = new Set(sources.procedures);

  const calls = new Counter({
    name: 'skillviews_trpc_calls_total',
    help: 'tRPC calls by procedure and outcome code (OK or the tRPC error code); each call of a batch counts once',
    labelNames: ['procedure', 'code'] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'skillviews_trpc_call_duration_seconds',
    help: 'Time from a call reaching its procedure to its result, by procedure (all outcomes)',
    labelNames: ['procedure'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  new Gauge({
    name: 'skillviews_db_pool_size',
    help: 'Connections the database pool may open (DB_POOL_SIZE; 1 for the embedded PGlite)',
    registers: [registry],
    collect() {
      this.set(sources.pool?.()?.size ?? 0);
    },
  });
  new Gauge({
    name: 'skillviews_db_pool_connections_in_use',
    help: 'Request transactions holding a pooled connection',
    registers: [registry],
    collect() {
      this.set(sources.pool?.()?.inUse ?? 0);
    },
  });
  new Gauge({
    name: 'skillviews_db_pool_waiting',
    help: 'Request transactions waiting for a pooled connection',
    registers: [registry],
    collect() {
      this.set(sources.pool?.()?.waiting ?? 0);
    },
  });
  // Counters fed from the authenticator's own tallies at scrape time, so a cache lookup costs one increment.
  const seen = { hits: 0, misses: 0 };
  const tokenCounter = (kind: 'hits' | 'misses') =>
    new Counter({
      name: `skillviews_auth_token_cache_${kind}_total`,
      help: kind === 'hits' ? 'Bearer tokens answered from the authenticator cache' : 'Bearer tokens verified (signature and user lookup) because the cache did not know them',
      registers: [registry],
      collect() {
        const now = sources.tokenCache?.()[kind] ?? 0;
        if (now > seen[kind]) this.inc(now - seen[kind]);
        seen[kind] = now;
      },
    });
  tokenCounter('hits');
  tokenCounter('misses');

  new Gauge({
    name: 'skillviews_live_streams',
    help: 'Open onChange live streams (server-sent events) on this process',
    registers: [registry],
    collect() {
      this.set(sources.live?.().streams ?? 0);
    },
  });
  new Gauge({
    name: 'skillviews_live_listening',
    help: '1 while the process holds its LISTEN connection for live updates, else 0',
    registers: [registry],
    collect() {
      this.set(sources.live?.().listening ? 1 : 0);
    },
  });
  const liveSeen: Partial<Record<LiveTally, number>> = {};
  const liveCounter = (tally: LiveTally, name: string, help: string) =>
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        const now = sources.live?.().stats[tally] ?? 0;
        const before = liveSeen[tally] ?? 0;
        if (now > before) this.inc(now - before);
        liveSeen[tally] = now;
      },
    });
  liveCounter('notifications', 'skillviews_live_notifications_total', 'Change notifications heard on the LISTEN connection');
  liveCounter('delivered', 'skillviews_live_events_total', '`changed` events sent to live streams (one per stream)');
  liveCounter('resyncs', 'skillviews_live_resyncs_total', '`resync` events sent to live streams');
  liveCounter('dropped', 'skillviews_live_dropped_total', 'Live streams dropped because their client stopped reading');
  liveCounter('reconnects', 'skillviews_live_listen_reconnects_total', 'Times the LISTEN connection was re-established after a loss');
  liveCounter('checkFailures', 'skillviews_live_check_failures_total', 'Re-checks of a notification under a subscriber\'s scope that failed (the subscriber resyncs)');

  // Pre-bound children: labelling by object hashes the labels on every call.
  const callChildren = new Map<string, ReturnType<typeof calls.labels>>();
  const durationChildren = new Map<string, ReturnType<typeof duration.labels>>();

  return {
    registry,
    /** The bounded label for a path a client sent. */
    procedureLabel(path: string | undefined): string {
      return path !== undefined && known.has(path) ? path : UNKNOWN_PROCEDURE;
    },
    /** Counts one call; `seconds` (time in the procedure) when it reached one. */
    recordCall(path: string | undefined, code: string, seconds?: number) {
      const procedure = path !== undefined && known.has(path) ? path : UNKNOWN_PROCEDURE;
      const outcome = codes.has(code) ? code : 'INTERNAL_SERVER_ERROR';
      const key = `${procedure}\u0000${outcome}`;
      let counter = callChildren.get(key);
      if (!counter) callChildren.set(key, (counter = calls.labels(procedure, outcome)));
      counter.inc();
      if (seconds !== undefined) {
        let histogram = durationChildren.get(procedure);
        if (!histogram) durationChildren.set(procedure, (histogram = duration.labels(procedure)));
        histogram.observe(seconds);
      }
    },
  };
}

/** True when `authorization` is `Bearer <token>` (compared in constant time). */
export function hasMetricsToken(authorization: string | undefined, token: string): boolean {
  const given = /^Bearer\s+(.+)$/i.exec(authorization ?? '')?.[1];
  if (!given) return false;
  const a = Buffer.from(given, 'utf8');
  const b = Buffer.from(token, 'utf8');
  return a.length === b.length && timingSafeEqual(a, b);
}
