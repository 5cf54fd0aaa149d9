// Rate limits with rate-limiter-flexible: calls per tenant and user per minute, and failed authentications per IP.
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import type { Session } from './session.ts';

const WINDOW_SECONDS = 60;

export interface RateLimitOptions {
  /** Calls per tenant and user per minute (RATE_LIMIT_PER_MINUTE); each call of a batch counts. 0: no limit. */
  perMinute: number;
  /**
   * Requests per client IP per minute that fail authentication (RATE_LIMIT_PER_IP_PER_MINUTE). Checked before a
   * token is verified: past it, every request from that IP that needs verifying is refused. 0: no limit.
   */
  perIpPerMinute: number;
  /**
   * A connected ioredis client to share the counters between server processes (RATE_LIMIT_REDIS_URL). Without it
   * the counters live in this process's memory: with N processes behind a balancer a user gets up to N × the limit.
   */
  redis?: ConstructorParameters<typeof RateLimiterRedis>[0]['storeClient'];
  /** Prefix of the store's keys (default `skillviews`). */
  keyPrefix?: string;
}

/** What the client is told: the `RateLimit-*` headers (IETF draft), and whether this call was refused. */
export interface RateLimitDecision {
  allowed: boolean;
  limit: number;
  remaining: number;
  /** Seconds until the window resets (RateLimit-Reset, and Retry-After when refused). */
  resetSeconds: number;
}

export type RateLimits = ReturnType<typeof createRateLimits>;

/**
 * The two limiters on one store. With Redis, each has a memory limiter as insurance: while Redis is unreachable
 * the process limits on its own rather than letting everything through or failing every call.
 */
export function createRateLimits(options: RateLimitOptions) {
  const prefix = options.keyPrefix ?? 'skillviews';
  const limiter = (points: number, name: string): RateLimiterAbstract | null => {
    if (points <= 0) return null;
    const base = { points, duration: WINDOW_SECONDS, keyPrefix: `${prefix}:rl:${name}` };
    if (!options.redis) return new RateLimiterMemory(base);
    return new RateLimiterRedis({
      ...base,
      storeClient: options.redis,
      rejectIfRedisNotReady: true,
      insuranceLimiter: new RateLimiterMemory(base),
    });
  };
  const calls = limiter(options.perMinute, 'user');
  const failures = limiter(options.perIpPerMinute, 'ip');

  const decision = (res: RateLimiterRes, limit: number, allowed: boolean): RateLimitDecision => ({
    allowed,
    limit,
    remaining: Math.max(0, res.remainingPoints),
    resetSeconds: Math.max(1, Math.ceil(res.msBeforeNext / 1000)),
  });

  return {
    /** Takes one call from the session's allowance; null when calls are not limited. */
    async takeCall(session: Session): Promise<RateLimitDecision | null> {
      if (!calls) return null;
      try {
        // Lower-case: Postgres takes upper-case uuids as the same user, so they must share one allowance.
        const key = `${session.tenantId}:${session.userId}`.toLowerCase();
        return decision(await calls.consume(key), options.perMinute, true);
      } catch (res) {
        // Anything but a refusal is a store failure the insurance limiter could not absorb: do not fail the call.
        if (res instanceof RateLimiterRes) return decision(res, options.perMinute, false);
        return null;
      }
    },
    /** Whether `ip` has used up its failed authentications (checked before a token is verified); null when allowed. */
    async ipRefusal(ip: string): Promise<RateLimitDecision | null> {
      if (!failures) return null;
      try {
        const res = await failures.get(ip);
        return res && res.consumedPoints >= options.perIpPerMinute ? decision(res, options.perIpPerMinute, false) : null;
      } catch {
        return null;
      }
    },
    /** Counts one failed authentication from `ip`. */
    async authenticationFailed(ip: string): Promise<void> {
      if (!failures) return;
      try {
        await failures.penalty(ip, 1);
      } catch {
        // a store failure: the next check decides
      }
    },
  };
}

/** The `RateLimit-*` headers (and `Retry-After` for a refusal) of a decision. */
export function rateLimitHeaders(d: RateLimitDecision): Record<string, string> {
  const headers: Record<string, string> = {
    'ratelimit-limit': String(d.limit),
    'ratelimit-remaining': String(d.remaining),
    'ratelimit-reset': String(d.resetSeconds),
  };
  if (!d.allowed) headers['retry-after'] = String(d.resetSeconds);
  return headers;
}
