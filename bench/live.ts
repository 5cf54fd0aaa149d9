// `npm run bench:live`: commit-to-delivery latency of onChange and the server CPU per delivered event, on Postgres.
//
// One fresh database (skillviews_bench_live), one tenant whose users have each viewed the two skills that change.
// For each subscriber count: the real server (server/main.ts, started as `npm start` starts it) in a child process,
// and a second child process holding one raw SSE stream per user. This process commits owner-side changes (edits of
// one skill, feedback on the other by a user without a stream) at a fixed pace and notes when each COMMIT returned;
// the subscriber process notes when each event arrived. Both use CLOCK_MONOTONIC (process.hrtime), shared by every
// process of the machine. Then the streams stay open, heartbeats only, for as long again: the difference in the
// server's CPU between the two phases, divided by the events delivered, is the extra CPU per event.
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { and, eq, sql } from 'drizzle-orm';
import { createDb, type Database } from '../db/client.ts';
import { DEFAULT_APP_ROLE, migrate } from '../db/migrate.ts';
import { asOwnerInTenant, insertSkill } from '../db/seed.ts';
import { skillFeedback, skills, tenants, users } from '../db/schema/index.ts';
import { signToken } from '../server/auth.ts';
import { cleanEnv, runProcess, type Proc } from '../tests/support/child-process.ts';
import { ask } from './child.ts';
import { BackendCpu, processCpuMs } from './cpu.ts';
import { summarize, type Summary } from './measure.ts';
import { createDatabase, dropDatabase } from './seed.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const DB_NAME = 'skillviews_bench_live';
/** Events of one stream closer together than this came from one re-check (RunResult.rechecks). */
const RECHECK_GAP_MS = 20;

/** Milliseconds on CLOCK_MONOTONIC: comparable between processes of one machine (unlike performance.now()). */
const monoMs = () => Number(process.hrtime.bigint()) / 1e6;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------------------------------
// The subscriber process: N raw SSE streams (node:http), every data event noted with its arrival time.

/** One data event as the subscriber saw it: [seq, arrival ms, kind (0 changed, 1 resync, 2 ready), skill index, reasons]. */
type Seen = [seq: number, at: number, kind: number, skill: number, reasons: string];

type SubscriberRequest =
  | { type: 'open'; trpcUrl: string; tokens: string[]; skillIds: string[]; concurrency: number }
  | { type: 'expect'; seq: number; timeoutMs: number }
  | { type: 'collect' }
  | { type: 'close' };

type SubscriberMessage =
  | { type: 'opened'; ms: number; readySeqs: number[]; epochs: string[]; refused: string[] }
  | { type: 'reached'; ms: number; behind: number }
  | { type: 'collected'; events: Seen[][]; pings: number; errors: string[]; closedEarly: number; cpuMs: number };

async function subscriberProcess() {
  const send = (m: SubscriberMessage) => process.send!(m);
  interface Sub {
    events: Seen[];
    maxSeq: number;
    req: http.ClientRequest;
  }
  const subs: Sub[] = [];
  let skillIndex = new Map<string, number>();
  let pings = 0;
  let closedEarly = 0;
  let closing = false;
  const errors: string[] = [];
  /** What the driver waits for: every stream to have an event at or past `seq`; `behind` counts those still short. */
  let expectation: { seq: number; behind: number; resolve: () => void } | null = null;

  const open = (trpcUrl: string, token: string) =>
    new Promise<{ sub: Sub; ready: string } | { refused: string }>((resolve) => {
      const input = encodeURIComponent(JSON.stringify({ json: {} }));
      const req = http.request(`${trpcUrl}/onChange?input=${input}`, {
        method: 'GET',
        headers: { accept: 'text/event-stream', authorization: `Bearer ${token}` },
        agent: false,
      });
      const sub: Sub = { events: [], maxSeq: -1, req };
      let ready: ((id: string) => void) | null = (id) => resolve({ sub, ready: id });
      req.on('error', (err) => {
        if (ready) resolve({ refused: err.message });
        else if (!closing) errors.push(`stream error: ${err.message}`);
      });
      req.on('response', (res) => {
        if (res.statusCode !== 200) {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () => resolve({ refused: `HTTP ${res.statusCode}: ${body.slice(0, 200)}` }));
          return;
        }
        res.setEncoding('utf8');
        let buffer = '';
        res.on('data', (chunk: string) => {
          const at = monoMs();
          buffer += chunk;
          let cut: number;
          while ((cut = buffer.indexOf('\n\n')) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            let id: string | undefined;
            let event = 'message';
            let data = '';
            for (const line of block.split('\n')) {
              if (line.startsWith('id: ')) id = line.slice(4);
              else if (line.startsWith('event: ')) event = line.slice(7);
              else if (line.startsWith('data: ')) data += line.slice(6);
            }
            if (event === 'ping') {
              pings++;
              continue;
            }
            if (event === 'serialized-error') {
              errors.push(`serialized-error: ${data.slice(0, 200)}`);
              continue;
            }
            if (event !== 'message' || id === undefined) continue;
            const seq = Number(id.slice(id.indexOf('.') + 1));
            const payload = (JSON.parse(data) as { json: { kind: string; skillId?: string; reasons?: string[] } }).json;
            if (payload.kind === 'ready') {
              sub.maxSeq = seq;
              ready?.(id);
              ready = null;
              continue;
            }
            const kind = payload.kind === 'changed' ? 0 : payload.kind === 'resync' ? 1 : 3;
            sub.events.push([seq, at, kind, payload.skillId ? (skillIndex.get(payload.skillId) ?? -1) : -1, (payload.reasons ?? []).join('+')]);
            if (expectation && sub.maxSeq < expectation.seq && seq >= expectation.seq && --expectation.behind === 0) expectation.resolve();
            if (seq > sub.maxSeq) sub.maxSeq = seq;
          }
        });
        res.on('close', () => {
          if (!closing) closedEarly++;
        });
      });
      req.end();
    });

  process.on('message', async (m: SubscriberRequest) => {
    if (m.type === 'open') {
      skillIndex = new Map(m.skillIds.map((id, i) => [id, i]));
      const t0 = monoMs();
      const readySeqs: number[] = [];
      const epochs = new Set<string>();
      const refused: string[] = [];
      let next = 0;
      const worker = async () => {
        while (next < m.tokens.length) {
          const result = await open(m.trpcUrl, m.tokens[next++]!);
          if ('refused' in result) refused.push(result.refused);
          else {
            subs.push(result.sub);
            const [epoch, seq] = result.ready.split('.');
            epochs.add(epoch!);
            readySeqs.push(Number(seq));
          }
        }
      };
      await Promise.all(Array.from({ length: m.concurrency }, worker));
      send({ type: 'opened', ms: monoMs() - t0, readySeqs, epochs: [...epochs], refused });
    } else if (m.type === 'expect') {
      const t0 = monoMs();
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, m.timeoutMs);
        expectation = {
          seq: m.seq,
          behind: subs.filter((s) => s.maxSeq < m.seq).length,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
        };
        if (expectation.behind === 0) expectation.resolve();
      });
      const left = expectation?.behind ?? 0;
      expectation = null;
      send({ type: 'reached', ms: monoMs() - t0, behind: left });
    } else if (m.type === 'collect') {
      const { user, system } = process.cpuUsage();
      send({ type: 'collected', events: subs.map((s) => s.events), pings, errors: errors.slice(0, 20), closedEarly, cpuMs: (user + system) / 1000 });
    } else {
      closing = true;
      for (const s of subs) s.req.destroy();
      process.exit(0);
    }
  });
}

// ---------------------------------------------------------------------------------------------------------------
// The driver.

const usage = `usage: DATABASE_URL=postgres://… npm run bench:live -- [options]

  --subscribers a,b   subscriber counts, one server process each (default 100,1000)
  --edits N           edits of skill A (owner-side, content) per run (default 30)
  --feedback N        feedback inserts on skill B by a user without a stream, interleaved (default 10)
  --interval-ms N     time between two commits (default 300)
  --warmup N          unmeasured changes first (alternately edit and feedback), delivered before measuring (default 6)
  --pool N            the server's DB_POOL_SIZE (default 10; re-checks use half of it)
  --timeout-ms N      longest wait for the last deliveries after the last commit (default 20000)
  --profile           write CPU profiles of each server process (node --cpu-prof) to bench/results/profiles/live-<n>-<time>/
  --keep              keep the database (${DB_NAME}) instead of dropping it
`;

interface Options {
  subscribers: number[];
  edits: number;
  feedback: number;
  intervalMs: number;
  warmup: number;
  pool: number;
  timeoutMs: number;
  keep: boolean;
  profile: boolean;
}

function fail(message: string): never {
  console.error(`bench:live: ${message}\n\n${usage}`);
  process.exit(2);
}

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      subscribers: { type: 'string', default: '100,1000' },
      edits: { type: 'string', default: '30' },
      feedback: { type: 'string', default: '10' },
      'interval-ms': { type: 'string', default: '300' },
      warmup: { type: 'string', default: '6' },
      pool: { type: 'string', default: '10' },
      'timeout-ms': { type: 'string', default: '20000' },
      keep: { type: 'boolean', default: false },
      profile: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(usage);
    process.exit(0);
  }
  const whole = (name: string, value: string, min: number) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min) fail(`--${name} must be a whole number ≥ ${min}`);
    return n;
  };
  const subscribers = values.subscribers.split(',').map((v) => whole('subscribers', v.trim(), 1));
  return {
    subscribers,
    edits: whole('edits', values.edits, 1),
    feedback: whole('feedback', values.feedback, 0),
    intervalMs: whole('interval-ms', values['interval-ms'], 1),
    warmup: whole('warmup', values.warmup, 0),
    pool: whole('pool', values.pool, 2),
    timeoutMs: whole('timeout-ms', values['timeout-ms'], 1000),
    keep: values.keep,
    profile: values.profile,
  };
}

interface Fixture {
  tenantId: string;
  subscriberIds: string[];
  authorId: string;
  /** [edited skill, skill that gets feedback] */
  skillIds: [string, string];
}

/** One tenant: `count` subscribers who each viewed both skills (as they are now), and a feedback author. */
async function seedTenant(db: Database, count: number): Promise<Fixture> {
  const tenantId = randomUUID();
  const subscriberIds = Array.from({ length: count }, () => randomUUID());
  const authorId = randomUUID();
  const skillIds = await asOwnerInTenant(db, tenantId, async (tx) => {
    await tx.insert(tenants).values({ id: tenantId, name: 'Live bench', slug: `live-${tenantId}` });
    await tx.insert(users).values(
      [...subscriberIds, authorId].map((id, i) => ({ id, tenantId, email: `user${i}@live.bench`, name: `User ${i}` })),
    );
    const ids: string[] = [];
    for (const slug of ['edited', 'discussed']) {
      const spec = { slug, category: 'Bench', versions: [{ name: slug, description: `The ${slug} skill`, createdDaysAgo: 3 }] };
      ids.push((await insertSkill(tx, tenantId, spec)).id);
    }
    // What insertView (tests/support/factory.ts) writes per row, set-based: the skill as it is now is seen.
    await tx.execute(sql`
      insert into user_skill_views
        (tenant_id, user_id, skill_id, first_viewed_at, last_viewed_at, last_viewed_version, view_count, seen_revision, seen_feedback)
      select s.tenant_id, u.id, s.id, now(), now(), pv.version, 1, s.content_revision, s.feedback_seq
      from unnest(${`{${subscriberIds.join(',')}}`}::uuid[]) as u(id)
      cross join skills s
      left join skill_versions pv on pv.id = s.published_version_id
      where s.tenant_id = ${tenantId}::uuid`);
    return ids as [string, string];
  });
  return { tenantId, subscriberIds, authorId, skillIds };
}

/** The changes of one run, in commit order: edits of skill 0 with feedback on skill 1 spread among them. */
function schedule(edits: number, feedback: number): (0 | 1)[] {
  const total = edits + feedback;
  const plan: (0 | 1)[] = [];
  let placed = 0;
  for (let i = 0; i < total; i++) {
    // Feedback at evenly spaced positions, never first (the first change is an edit).
    const due = Math.floor(((i + 1) * feedback) / total);
    if (due > placed && i > 0) {
      plan.push(1);
      placed++;
    } else plan.push(0);
  }
  return plan;
}


/** `skillviews_live_*` counters from the server's /metrics. */
async function liveMetrics(url: string, token: string): Promise<Record<string, number>> {
  const res = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${token}` } });
  const text = await res.text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^skillviews_live_(\w+) (\S+)$/gm)) out[m[1]!] = Number(m[2]);
  return out;
}

interface RunResult {
  subscribers: number;
  changes: number;
  expected: number;
  delivered: number;
  missing: number;
  /** Deliveries covered by an event announcing a later change of the same skill too (a batch). */
  coalesced: number;
  /** changed + resync events the subscribers received. */
  events: number;
  resyncs: number;
  wrongReasons: number;
  latency: Summary & { min: number; max: number };
  /** Per change: when its last subscriber had it (ms after the commit): median and max over the changes. */
  lastP50: number;
  lastMax: number;
  over2s: number;
  openMs: number;
  refused: string[];
  deliveryMs: number;
  /** The delivery phase on CLOCK_MONOTONIC (ms): the time base of V8's CPU profiles (µs), to cut them to it. */
  deliveryWindow: [number, number];
  serverCpuMs: { delivery: number; idle: number };
  dbCpuMs: { delivery: number; idle: number };
  subscriberCpuMs: number;
  extraServerUsPerEvent: number;
  extraDbUsPerEvent: number;
  /**
   * Re-checks (one transaction each) the deliveries took, inferred from the arrivals: the hub re-checks once per
   * subscriber per batch and, as every re-check here finds news (nobody marks anything seen), writes that re-check's
   * events at once (one per skill). A stream's events less than RECHECK_GAP_MS apart are one re-check; a
   * subscriber's next re-check comes a whole batch later (≥ batchMs, 10 ms, plus the other subscribers' re-checks).
   */
  rechecks: number;
  /** Re-checks of the subscriber that had the most (the number of batches). */
  batches: number;
  extraServerUsPerRecheck: number;
  load: { before: number[]; after: number[] };
  metrics: Record<string, number>;
  pings: number;
  streamErrors: string[];
  closedEarly: number;
  serverWarnings: string[];
  slowest: { change: number; kind: string; subscriber: number; ms: number }[];
  /** Per change: when its first and its last subscriber had it (ms after the commit). */
  perChange: { change: number; kind: string; firstMs: number; lastMs: number }[];
}

async function runOnce(url: string, fixture: Fixture, n: number, options: Options, secret: string): Promise<RunResult> {
  const loadBefore = os.loadavg();
  const metricsToken = randomBytes(24).toString('base64url');
  const server: Proc = runProcess(
    process.execPath,
    // As `npm start` runs it (package.json): the same heap limit, node --import tsx.
    [
      '--max-old-space-size=192',
      ...(options.profile ? ['--cpu-prof', `--cpu-prof-dir=${path.join(here, 'results', 'profiles', `live-${n}-${Date.now()}`)}`] : []),
      '--import',
      'tsx',
      'server/main.ts',
    ],
    cleanEnv({
      NODE_ENV: 'production',
      DATABASE_URL: url,
      AUTH_SECRET: secret,
      MIGRATE_ON_START: 'false',
      PORT: '0',
      HOST: '127.0.0.1',
      LOG_LEVEL: 'info',
      METRICS: 'true',
      METRICS_TOKEN: metricsToken,
      DB_POOL_SIZE: String(options.pool),
    }),
  );
  const subscriber = fork(fileURLToPath(import.meta.url), [], {
    execArgv: ['--import', 'tsx'],
    env: { ...process.env, BENCH_LIVE_ROLE: 'subscriber' },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const writer = createDb({ url, poolSize: 1 });
  const backends = new BackendCpu(url);
  try {
    const [, baseUrl] = await server.waitFor(/skill-views is listening on (http:\/\/\S+)/, 60_000);
    const ids = fixture.subscriberIds.slice(0, n);
    const tokens = await Promise.all(ids.map((userId) => signToken({ tenantId: fixture.tenantId, userId }, secret, '1h')));
    const opened = await ask<Extract<SubscriberMessage, { type: 'opened' }>>(
      subscriber,
      { type: 'open', trpcUrl: `${baseUrl}/trpc`, tokens, skillIds: fixture.skillIds, concurrency: 20 },
      'opened',
    );
    if (opened.refused.length > 0) console.error(`  ${opened.refused.length} streams refused, first: ${opened.refused[0]}`);
    if (opened.epochs.length !== 1) throw new Error(`streams saw ${opened.epochs.length} epochs; expected one`);
    let base = Math.max(...opened.readySeqs);
    const tag = randomBytes(4).toString('hex');
    /** Commits the changes of `plan` one every interval; returns when each COMMIT returned. */
    const commitAll = async (plan: (0 | 1)[], label: string) => {
      const commits: number[] = [];
      const start = monoMs();
      for (let i = 0; i < plan.length; i++) {
        const wait = start + i * options.intervalMs - monoMs();
        if (wait > 0) await sleep(wait);
        const skillId = fixture.skillIds[plan[i]!];
        await asOwnerInTenant(writer.db, fixture.tenantId, async (tx) => {
          if (plan[i] === 0) {
            await tx
              .update(skills)
              .set({ description: `Edit ${tag}-${label}${i}` })
              .where(and(eq(skills.tenantId, fixture.tenantId), eq(skills.id, skillId)));
          } else {
            await tx.insert(skillFeedback).values({ tenantId: fixture.tenantId, skillId, userId: fixture.authorId, feedbackType: 'comment', comment: `Note ${label}${i}` });
          }
        });
        commits.push(monoMs());
      }
      return commits;
    };
    const expect = (seq: number) =>
      ask<Extract<SubscriberMessage, { type: 'reached' }>>(subscriber, { type: 'expect', seq, timeoutMs: options.timeoutMs }, 'reached');

    // Warm-up (a fresh process compiles its code paths on the first deliveries): delivered, not measured.
    if (options.warmup > 0) {
      const warm = Array.from({ length: options.warmup }, (_, i) => (i % 2) as 0 | 1);
      await commitAll(warm, 'w');
      const warmed = await expect(base + warm.length);
      if (warmed.behind > 0) console.error(`  warm-up: ${warmed.behind} streams lacked the last warm-up change`);
      base += warm.length;
    }
    await sleep(1000);

    // Delivery phase: the changes at a fixed pace, then until every stream has the last one.
    const plan = schedule(options.edits, options.feedback);
    const [cpu0, db0] = [await processCpuMs(server.pid), await backends.ms()];
    const start = monoMs();
    const commits = await commitAll(plan, '');
    const reached = await expect(base + plan.length);
    const deliveryMs = monoMs() - start;
    const [cpu1, db1] = [await processCpuMs(server.pid), await backends.ms()];

    // Idle phase: the same streams open for as long, heartbeats only.
    await sleep(deliveryMs);
    const [cpu2, db2] = [await processCpuMs(server.pid), await backends.ms()];
    const loadAfter = os.loadavg();

    const collected = await ask<Extract<SubscriberMessage, { type: 'collected' }>>(subscriber, { type: 'collect' }, 'collected');
    const metrics = await liveMetrics(baseUrl!, metricsToken);
    const batches = collected.events.map((events) => {
      let groups = 0;
      let previous = -Infinity;
      for (const e of events) {
        if (e[0] <= base) continue;
        if (e[1] - previous > RECHECK_GAP_MS) groups++;
        previous = e[1];
      }
      return groups;
    });
    const rechecks = batches.reduce((a, b) => a + b, 0);

    // Each change i is notification base + 1 + i (this process commits them one by one; nothing else writes).
    const latencies: number[] = [];
    // A refused stream misses every change.
    let missing = opened.refused.length * plan.length;
    let coalesced = 0;
    let wrongReasons = 0;
    let over2s = 0;
    const lastPerChange: number[] = [];
    const perChange: RunResult['perChange'] = [];
    const slowest: RunResult['slowest'] = [];
    for (let i = 0; i < plan.length; i++) {
      const seq = base + 1 + i;
      const skill = plan[i]!;
      let last = -Infinity;
      let first = Infinity;
      collected.events.forEach((events, s) => {
        const hit = events.find((e) => e[0] >= seq && (e[2] === 1 || (e[2] === 0 && e[3] === skill)));
        if (!hit) {
          missing++;
          return;
        }
        if (hit[0] > seq) coalesced++;
        if (hit[2] === 0 && hit[4] !== (skill === 0 ? 'content' : 'feedback')) wrongReasons++;
        const ms = hit[1] - commits[i]!;
        latencies.push(ms);
        if (ms > 2000) over2s++;
        last = Math.max(last, ms);
        first = Math.min(first, ms);
        slowest.push({ change: i, kind: skill === 0 ? 'edit' : 'feedback', subscriber: s, ms });
        slowest.sort((a, b) => b.ms - a.ms);
        slowest.length = Math.min(slowest.length, 5);
      });
      if (last > -Infinity) lastPerChange.push(last);
      perChange.push({ change: i, kind: skill === 0 ? 'edit' : 'feedback', firstMs: Math.round(first), lastMs: Math.round(last) });
    }
    const measured = collected.events.map((events) => events.filter((e) => e[0] > base));
    const events = measured.reduce((a, e) => a + e.length, 0);
    const resyncs = measured.reduce((a, e) => a + e.filter((x) => x[2] === 1).length, 0);
    const summary = summarize([{ ops: latencies.length, errors: 0, firstError: null, elapsedMs: deliveryMs, latencies }]);
    const sorted = [...latencies].sort((a, b) => a - b);
    const lastSorted = [...lastPerChange].sort((a, b) => a - b);
    const serverCpu = { delivery: cpu1 - cpu0, idle: cpu2 - cpu1 };
    const dbCpu = { delivery: db1 - db0, idle: db2 - db1 };
    if (reached.behind > 0) console.error(`  ${reached.behind} streams still lacked the last change after ${options.timeoutMs} ms`);
    const warnings = server
      .stdout()
      .split('\n')
      .filter((line) => /"level":(4|5|6)\d/.test(line))
      .slice(0, 10);
    return {
      subscribers: n,
      changes: plan.length,
      expected: plan.length * n,
      delivered: latencies.length,
      missing,
      coalesced,
      events,
      resyncs,
      wrongReasons,
      latency: { ...summary, min: sorted[0] ?? Number.NaN, max: sorted[sorted.length - 1] ?? Number.NaN },
      lastP50: lastSorted[Math.max(0, Math.ceil(lastSorted.length / 2) - 1)] ?? Number.NaN,
      lastMax: lastSorted[lastSorted.length - 1] ?? Number.NaN,
      over2s,
      openMs: opened.ms,
      refused: opened.refused,
      deliveryMs,
      deliveryWindow: [start, start + deliveryMs],
      serverCpuMs: serverCpu,
      dbCpuMs: dbCpu,
      subscriberCpuMs: collected.cpuMs,
      extraServerUsPerEvent: events > 0 ? ((serverCpu.delivery - serverCpu.idle) * 1000) / events : Number.NaN,
      extraDbUsPerEvent: events > 0 ? ((dbCpu.delivery - dbCpu.idle) * 1000) / events : Number.NaN,
      rechecks,
      batches: Math.max(0, ...batches),
      extraServerUsPerRecheck: rechecks > 0 ? ((serverCpu.delivery - serverCpu.idle) * 1000) / rechecks : Number.NaN,
      load: { before: loadBefore, after: loadAfter },
      metrics,
      pings: collected.pings,
      streamErrors: collected.errors,
      closedEarly: collected.closedEarly,
      serverWarnings: warnings,
      slowest,
      perChange,
    };
  } finally {
    if (subscriber.exitCode === null) {
      subscriber.send({ type: 'close' } satisfies SubscriberRequest);
      await new Promise((resolve) => subscriber.once('exit', resolve));
    }
    await server.stop(15_000);
    await backends.close();
    await writer.close();
  }
}

const f0 = (n: number) => (Number.isFinite(n) ? n.toFixed(0) : '–');
const f1 = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : '–');
const loadText = (l: number[]) => l.map((x) => x.toFixed(2)).join(' / ');

function report(results: RunResult[], options: Options): string {
  const cpu = os.cpus();
  const lines = [
    `Machine: ${cpu.length} × ${cpu[0]?.model ?? 'cpu'}, ${os.platform()} ${os.release()}; Node ${process.version}.`,
    `Changes per run: ${options.edits} edits of one skill + ${options.feedback} feedback inserts on another (by a user without a stream), one commit every ${options.intervalMs} ms, after ${options.warmup} unmeasured warm-up changes; server pool ${options.pool} (re-checks at most ${Math.max(1, Math.floor(options.pool / 2))} at once).`,
    '',
    '| subscribers | deliveries (expected) | missing | p50 ms | p95 ms | p99 ms | max ms | last subscriber, median / max over changes ms | events (coalesced deliveries) | re-checks | server CPU delivery / idle ms | extra server CPU per event µs | extra DB CPU per event µs | load avg 1/5/15 before → after |',
    '|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|',
  ];
  for (const r of results) {
    lines.push(
      `| ${r.subscribers} | ${r.delivered} (${r.expected}) | ${r.missing} | ${f0(r.latency.p50)} | ${f0(r.latency.p95)} | ${f0(r.latency.p99)} | ${f0(r.latency.max)} | ${f0(r.lastP50)} / ${f0(r.lastMax)} | ${r.events} (${r.coalesced}) | ${r.rechecks} | ${f0(r.serverCpuMs.delivery)} / ${f0(r.serverCpuMs.idle)} | ${f1(r.extraServerUsPerEvent)} | ${f1(r.extraDbUsPerEvent)} | ${loadText(r.load.before)} → ${loadText(r.load.after)} |`,
    );
  }
  lines.push('');
  for (const r of results) {
    lines.push(
      `- ${r.subscribers} subscribers: streams opened in ${f0(r.openMs)} ms${r.refused.length ? ` (${r.refused.length} refused: ${r.refused[0]})` : ''}; delivery phase ${f0(r.deliveryMs)} ms; ` +
        `deliveries over 2 s: ${r.over2s}; resyncs: ${r.resyncs}; wrong reasons: ${r.wrongReasons}; stream errors: ${r.streamErrors.length}; streams closed early: ${r.closedEarly}; ` +
        `re-checks ${r.rechecks} (batches ${r.batches}; extra server CPU per re-check ${f1(r.extraServerUsPerRecheck)} µs); pings: ${r.pings}; subscriber process CPU ${f0(r.subscriberCpuMs)} ms in all; DB CPU delivery / idle ${f0(r.dbCpuMs.delivery)} / ${f0(r.dbCpuMs.idle)} ms; ` +
        `server metrics: ${Object.entries(r.metrics).map(([k, v]) => `${k}=${v}`).join(', ')}; ` +
        `slowest: ${r.slowest.map((s) => `${s.kind} #${s.change} → subscriber ${s.subscriber} ${f0(s.ms)} ms`).join(', ')}` +
        (r.serverWarnings.length ? `; server warnings: ${r.serverWarnings.join(' | ')}` : '; server warnings: none'),
    );
  }
  return lines.join('\n');
}

async function main() {
  const options = parseOptions();
  const adminUrl = process.env.DATABASE_URL;
  if (!adminUrl) fail('DATABASE_URL is not set: point it at PostgreSQL ≥ 15 as a role that may create databases');
  const began = monoMs();
  console.log(`bench:live: creating ${DB_NAME}`);
  const url = await createDatabase(adminUrl, DB_NAME);
  const results: RunResult[] = [];
  try {
    const owner = createDb({ url, poolSize: 1 });
    let fixture: Fixture;
    try {
      await migrate(owner, { appRole: DEFAULT_APP_ROLE });
      fixture = await seedTenant(owner.db, Math.max(...options.subscribers));
    } finally {
      await owner.close();
    }
    const secret = randomBytes(32).toString('base64url');
    for (const n of options.subscribers) {
      console.log(`bench:live: ${n} subscribers (load average ${loadText(os.loadavg())})`);
      results.push(await runOnce(url, fixture, n, options, secret));
      const r = results[results.length - 1]!;
      console.log(
        `  p50 ${f0(r.latency.p50)} ms, p95 ${f0(r.latency.p95)} ms, p99 ${f0(r.latency.p99)} ms, ${r.delivered}/${r.expected} delivered, extra server CPU ${f1(r.extraServerUsPerEvent)} µs/event`,
      );
    }
  } finally {
    if (!options.keep) await dropDatabase(adminUrl, DB_NAME);
  }
  const text = report(results, options);
  console.log(`\n${text}\n\nTotal ${f0((monoMs() - began) / 1000)} s.`);
  const dir = path.join(here, 'results');
  await mkdir(dir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  await writeFile(path.join(dir, `${stamp}-live.json`), JSON.stringify({ options, results }, null, 2));
  await writeFile(path.join(dir, 'latest-live.md'), `${text}\n`);
}

if (process.env.BENCH_LIVE_ROLE === 'subscriber') await subscriberProcess();
else await main();
