// Load for reliability tests: recordView calls over HTTP from several workers, every outcome timed, and exact accounting afterwards.
import type postgres from 'postgres';
import { expect } from 'vitest';

export interface Outcome {
  /** HTTP status, or -1 when no answer came at all (refused, reset, or the 5× time-limit give-up). */
  status: number;
  ms: number;
  /** Index of the user (token) that made the call. */
  user: number;
}

/**
 * recordView of `skillId` as each of `tokens`' users against the server at `baseUrl`. `start(workers)` runs
 * workers that call in a loop (pausing `pauseMs` between calls) until `stop()`; `call(user)` makes one call.
 */
export function recordViewLoad(baseUrl: string, tokens: string[], skillId: string, timeoutMs: number) {
  const outcomes: Outcome[] = [];
  let stopped = false;
  let workers: Promise<void>[] = [];
  const call = async (user: number): Promise<Outcome> => {
    const started = performance.now();
    let status = -1;
    try {
      const res = await fetch(`${baseUrl}/trpc/recordView`, {
        method: 'POST',
        headers: { authorization: `Bearer ${tokens[user]}`, 'content-type': 'application/json' },
        body: JSON.stringify({ json: { skillId } }),
        signal: AbortSignal.timeout(timeoutMs * 5),
      });
      status = res.status;
      await res.arrayBuffer();
    } catch {
      // no answer
    }
    const outcome = { status, ms: performance.now() - started, user };
    outcomes.push(outcome);
    return outcome;
  };
  return {
    outcomes,
    call,
    start: (count: number, pauseMs = 0) => {
      workers = Array.from({ length: count }, async (_, w) => {
        while (!stopped) {
          await call(w % tokens.length);
          if (pauseMs) await new Promise((r) => setTimeout(r, pauseMs));
        }
      });
    },
    stop: async () => {
      stopped = true;
      await Promise.all(workers);
    },
    /** Calls as user 0 until one succeeds; the milliseconds from `since` to that success (Infinity past `withinMs`). */
    recovery: async (since: number, withinMs: number) => {
      while (performance.now() - since < withinMs) {
        if ((await call(0)).status === 200) return performance.now() - since;
        await new Promise((r) => setTimeout(r, 100));
      }
      return Infinity;
    },
  };
}

/**
 * No acknowledged view is lost and none is invented: per user, the committed view count is at least the
 * calls answered 200 and at most those plus the calls that failed (a failure may have committed before its
 * connection was lost). And no backend of the app is left inside a transaction.
 */
export async function expectExactAccounting(sql: postgres.Sql, tenantId: string, userIds: string[], outcomes: Outcome[]) {
  const rows = await sql`select user_id, view_count from user_skill_views where tenant_id = ${tenantId}`;
  const committed = new Map(rows.map((r) => [r.user_id as string, r.view_count as number]));
  userIds.forEach((userId, user) => {
    const acked = outcomes.filter((o) => o.user === user && o.status === 200).length;
    const failed = outcomes.filter((o) => o.user === user && o.status !== 200).length;
    const count = committed.get(userId) ?? 0;
    expect(count, `user ${user}: committed vs acknowledged`).toBeGreaterThanOrEqual(acked);
    expect(count, `user ${user}: committed vs attempted`).toBeLessThanOrEqual(acked + failed);
  });
  const [stuck] = await sql`select count(*)::int as n from pg_stat_activity
    where datname = current_database() and application_name = 'skill-views' and state like 'idle in transaction%'`;
  expect(stuck!.n, 'backends left idle in a transaction').toBe(0);
}
