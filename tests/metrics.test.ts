// /metrics: calls counted exactly by procedure and code, bounded labels whatever clients send, the token, the switch.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withTenantTransaction } from '../db/queries/tenant-transaction.ts';
import { engines } from './support/engines.ts';
import { APP_ROLE, createTenant, skillSpec, type TenantFixture } from './support/factory.ts';
import { rawCall, startTestServer, tokenFor, type TestServer } from './support/server.ts';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses Prometheus text exposition into samples (comments skipped). */
function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`unparseable metrics line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return samples;
}

async function scrape(server: TestServer, token?: string): Promise<Sample[]> {
  const res = await fetch(`${server.url}/metrics`, token ? { headers: { authorization: `Bearer ${token}` } } : {});
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
  return parseMetrics(await res.text());
}

/** `skillviews_trpc_calls_total` as `procedure code → count`. */
function callCounts(samples: Sample[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const s of samples) if (s.name === 'skillviews_trpc_calls_total') counts[`${s.labels.procedure} ${s.labels.code}`] = s.value;
  return counts;
}

describe.each(engines)('/metrics on $name', (engine) => {
  let server: TestServer;
  let t: TenantFixture;
  let token: string;
  beforeAll(async () => {
    server = await startTestServer(engine, { metrics: {} });
    t = await createTenant(server.db, { skills: [skillSpec('s')] });
    token = await tokenFor({ tenantId: t.tenantId, userId: t.userIds[0]! });
  });
  afterAll(() => server.close());

  it('counts each scripted call by procedure and code exactly, batched calls one by one, with durations', async () => {
    const skillId = t.skills.s!;
    expect((await rawCall(server.trpcUrl, 'whatsNew', { token, input: {} })).status).toBe(200);
    expect((await rawCall(server.trpcUrl, 'recordView', { method: 'POST', token, input: { skillId } })).status).toBe(200);
    expect((await rawCall(server.trpcUrl, 'changeSummary', { token, input: { skillId } })).status).toBe(200);
    expect((await rawCall(server.trpcUrl, 'changeSummary', { token, input: { skillId: 'not-a-uuid' } })).status).toBe(400);
    expect((await rawCall(server.trpcUrl, 'recordView', { method: 'POST', token, input: { skillId: randomUUID() } })).status).toBe(404);
    expect((await rawCall(server.trpcUrl, 'whatsNew', { input: {} })).status).toBe(401);
    expect((await rawCall(server.trpcUrl, 'whatsNew', { token: 'not.a.token', input: {} })).status).toBe(401);
    // A batch of three: each call counts under its own procedure and outcome.
    const batch = await fetch(`${server.trpcUrl}/whatsNew,changeSummary,whatsNew?batch=1`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'x-trpc-method-override': 'POST' },
      body: JSON.stringify({ 0: { json: {} }, 1: { json: { skillId: 'nope' } }, 2: { json: { limit: 1 } } }),
    });
    expect(batch.status).toBe(207);
    // Refused before any procedure ran: a mutation over GET, an unknown procedure.
    expect((await rawCall(server.trpcUrl, 'recordView', { token, input: { skillId } })).status).toBe(405);
    expect((await rawCall(server.trpcUrl, 'noSuchProcedure', { token })).status).toBe(404);

    const samples = await scrape(server);
    expect(callCounts(samples)).toEqual({
      'whatsNew OK': 3,
      'whatsNew UNAUTHORIZED': 2,
      'recordView OK': 1,
      'recordView NOT_FOUND': 1,
      'recordView METHOD_NOT_SUPPORTED': 1,
      'changeSummary OK': 1,
      'changeSummary BAD_REQUEST': 2,
      '(unknown) NOT_FOUND': 1,
    });
    // Durations of the calls that reached their procedure: whatsNew 5 (3 OK, 2 UNAUTHORIZED), changeSummary 3, recordView 2.
    const histogramCount = (procedure: string) =>
      samples.find((s) => s.name === 'skillviews_trpc_call_duration_seconds_count' && s.labels.procedure === procedure)?.value;
    expect(histogramCount('whatsNew')).toBe(5);
    expect(histogramCount('changeSummary')).toBe(3);
    expect(histogramCount('recordView')).toBe(2);
    // The other families are there: pool, token cache, process metrics under the prefix.
    const names = new Set(samples.map((s) => s.name));
    for (const name of [
      'skillviews_db_pool_size',
      'skillviews_db_pool_connections_in_use',
      'skillviews_db_pool_waiting',
      'skillviews_auth_token_cache_hits_total',
      'skillviews_auth_token_cache_misses_total',
      'skillviews_process_cpu_seconds_total',
      'skillviews_nodejs_eventloop_lag_seconds',
    ]) {
      expect(names, name).toContain(name);
    }
    // The first request with the token verified it (a miss, as did 'not.a.token'); its seven others were hits.
    const value = (name: string) => samples.find((s) => s.name === name)?.value;
    expect(value('skillviews_auth_token_cache_misses_total')).toBe(2);
    expect(value('skillviews_auth_token_cache_hits_total')).toBe(7);
    expect(value('skillviews_db_pool_connections_in_use')).toBe(0);
    expect(value('skillviews_db_pool_size')).toBe(engine.name === 'pglite' ? 1 : 4);
  });

  it('adds no label values for 1,000 requests to random unknown paths and procedures', async () => {
    const before = await scrape(server);
    const valuesOf = (samples: Sample[]) => new Set(samples.flatMap((s) => Object.entries(s.labels).map(([k, v]) => `${k}=${v}`)));
    const unknownBefore = callCounts(before)['(unknown) NOT_FOUND'] ?? 0;
    const random = () => randomUUID().replaceAll('-', '').slice(0, 6 + Math.floor(Math.random() * 20));
    let trpcCalls = 0;
    for (let i = 0; i < 1000; i += 20) {
      await Promise.all(
        Array.from({ length: 20 }, async (_, j) => {
          const kind = (i + j) % 4;
          if (kind === 0) {
            trpcCalls++;
            expect((await rawCall(server.trpcUrl, random(), { token })).status).toBe(404);
          } else if (kind === 1) {
            // A batch of two unknown procedures: two calls.
            trpcCalls += 2;
            const res = await fetch(`${server.trpcUrl}/${random()}.${random()},${random()}?batch=1&input=%7B%7D`, { headers: { authorization: `Bearer ${token}` } });
            expect(res.status).toBe(404);
          } else if (kind === 2) {
            trpcCalls++;
            expect((await rawCall(server.trpcUrl, `whatsNew.${random()}`, { token })).status).toBe(404);
          } else {
            expect((await fetch(`${server.url}/${random()}/${random()}`)).status).toBe(404);
          }
        }),
      );
    }
    const after = await scrape(server);
    const newValues = [...valuesOf(after)].filter((v) => !valuesOf(before).has(v));
    // Process metrics may gain a value by themselves (a new GC kind, a new active handle type); no procedure or code may.
    expect(newValues.filter((v) => v.startsWith('procedure=') || v.startsWith('code='))).toEqual([]);
    expect(callCounts(after)['(unknown) NOT_FOUND']).toBe(unknownBefore + trpcCalls);
    const procedures = new Set(after.filter((s) => s.labels.procedure !== undefined).map((s) => s.labels.procedure));
    expect([...procedures].every((p) => p === '(unknown)' || /^[a-zA-Z]+$/.test(p!))).toBe(true);
  });
});

describe.each(engines)('pool metrics on $name', (engine) => {
  it('reports request transactions holding the one connection and those waiting for it, then none', async () => {
    const handle = await engine.open({ poolSize: 1 });
    const server = await startTestServer(engine, { handle, metrics: {} });
    const scope = { role: APP_ROLE, tenantId: randomUUID(), userId: randomUUID() };
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const first = withTenantTransaction(handle.db, scope, () => held);
    const second = withTenantTransaction(handle.db, scope, async () => {});
    try {
      const gauge = async (name: string) => (await scrape(server)).find((s) => s.name === name)?.value;
      await expect.poll(() => gauge('skillviews_db_pool_connections_in_use')).toBe(1);
      expect(await gauge('skillviews_db_pool_waiting')).toBe(1);
      expect(await gauge('skillviews_db_pool_size')).toBe(1);
      release();
      await Promise.all([first, second]);
      expect(await gauge('skillviews_db_pool_connections_in_use')).toBe(0);
      expect(await gauge('skillviews_db_pool_waiting')).toBe(0);
    } finally {
      release();
      await Promise.allSettled([first, second]);
      await server.close();
      await handle.close();
    }
  });
});

describe('/metrics switches', () => {
  const engine = engines[0]!;

  it('asks for METRICS_TOKEN when it is set: 401 without it or with another, 200 with it', async () => {
    const secret = `metrics-${randomUUID()}`;
    const server = await startTestServer(engine, { metrics: { token: secret } });
    try {
      const none = await fetch(`${server.url}/metrics`);
      expect(none.status).toBe(401);
      expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/);
      expect(await none.text()).not.toContain('skillviews_');
      const wrong = await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${secret}x` } });
      expect(wrong.status).toBe(401);
      const samples = await scrape(server, secret);
      expect(samples.some((s) => s.name === 'skillviews_trpc_call_duration_seconds_bucket' || s.name === 'skillviews_process_cpu_seconds_total')).toBe(true);
    } finally {
      await server.close();
    }
  });

  it('has no /metrics when metrics are off (METRICS=false): 404', async () => {
    const server = await startTestServer(engine, { metrics: false });
    try {
      expect((await fetch(`${server.url}/metrics`)).status).toBe(404);
    } finally {
      await server.close();
    }
  });

  it('keeps one registry per server: two servers in one process count their own calls', async () => {
    const a = await startTestServer(engine, { metrics: {} });
    const b = await startTestServer(engine, { metrics: {} });
    try {
      await rawCall(a.trpcUrl, 'whatsNew');
      await rawCall(a.trpcUrl, 'whatsNew');
      await rawCall(b.trpcUrl, 'whatsNew');
      expect(callCounts(await scrape(a))).toEqual({ 'whatsNew UNAUTHORIZED': 2 });
      expect(callCounts(await scrape(b))).toEqual({ 'whatsNew UNAUTHORIZED': 1 });
    } finally {
      await a.close();
      await b.close();
    }
  });
});
