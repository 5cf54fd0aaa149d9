// `npm run bench`: seeds fresh databases, measures every procedure raw / through createCaller / over HTTP, checks the targets.
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import postgres from 'postgres';
import { createDb, type DbHandle } from '../db/client.ts';
import { DEFAULT_APP_ROLE } from '../db/migrate.ts';
import { createContextInner } from '../server/context.ts';
import { createCaller } from '../server/router.ts';
import type { ClientConfig, ClientMessage, ClientRequest } from './http-client.ts';
import type { ServerConfig, ServerMessage } from './http-server.ts';
import { ask } from './child.ts';
import { BackendCpu, processCpuMs } from './cpu.ts';
import { countingDriverOptions, diffCounters, newCounters, type DriverCounters } from './instrument.ts';
import { runPhase, summarize, type PhaseResult, type Summary } from './measure.ts';
import { explain } from './explain.ts';
import { createDatabase, databaseExists, databaseUrl, dropDatabase, scales, seed, type Scale, type SeedTimings } from './seed.ts';
import { readStateProcedures, runReadState, type ReadStateProcedure } from './read-state.ts';
import {
  bindParams,
  captureStatements,
  clearingProcedures,
  planOfProbe,
  procedures,
  Workload,
  type Call,
  type Procedure,
  type StatementTemplate,
  type Templates,
} from './workload.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const modes = ['raw', 'caller', 'http'] as const;
type Mode = (typeof modes)[number];
const scalingProcedures: Procedure[] = ['whatsNew', 'viewsForSkills'];
const scalingModes: Mode[] = ['raw', 'caller'];

const usage = `usage: DATABASE_URL=postgres://… npm run bench -- [options]

  --scenario standard|read-state
                       standard (default): every procedure raw / caller / http on the seeded data sets (below).
                       read-state: whatsNew, whatsNewCount and markAllSeen through createCaller, one call at a
                       time, for one heavy user at 200, 2,000 and 20,000 views and for a light user (50 views) in
                       a quiet and in a busy tenant (5,000 skills changed inside the window), on a database of
                       its own (skillviews_bench_read_state); prints the plans of every statement (the feed's
                       probe and the feed/count) and checks the ratios. Takes --seconds (per procedure per user,
                       default 12), --rounds, --mark-iterations, --procedures, --keep, --reuse.
  --mark-iterations N  read-state: markAllSeen calls per user per round (default 20); the rows each call marked
                       are restored, untimed, before the next, so every call marks the same rows
  --scale small|full   data set (default full: 2,000,000 views; small: 200,000). A full run also seeds the
                       small data set and compares whatsNew and viewsForSkills latency between the two.
  --seconds N          measured seconds per procedure per mode (default 12), split over the rounds
  --rounds N           interleaved rounds (default 3)
  --concurrency N      concurrent callers (default 16)
  --pool N             database connections per pool, same for every mode (default 10, the server's default)
  --server-log LEVEL   info (as in production, to /dev/null) or silent (default info)
  --server-node-options="FLAGS"
                       Node flags for the server process (default "--max-old-space-size=192", the heap
                       limit npm start sets, so the server runs as npm start runs it)
  --client-fetch F     the HTTP client's fetch: lean (node:http keep-alive, see bench/lean-fetch.ts) or
                       global (Node's built-in fetch) (default lean)
  --procedures a,b     measure only these procedures (default all six; markAllSeen is measured after the others,
                       in rounds of its own, so they see the seeded read state)
  --modes a,b          measure only these modes (raw is always included: it is the reference)
  --profile            write CPU profiles (node --cpu-prof) of the HTTP server and client to bench/results/profiles
  --keep               keep the databases (skillviews_bench_small, skillviews_bench_full; read-state:
                       skillviews_bench_read_state) instead of dropping them
  --reuse              use those databases if a kept run left them (for quick iterations; implies --keep;
                       their view rows include earlier runs' recordView calls, so publish fresh runs only)
`;

interface Options {
  scenario: 'standard' | 'read-state';
  markIterations: number;
  readStateProcedures: ReadStateProcedure[];
  scale: Scale['name'];
  seconds: number;
  rounds: number;
  concurrency: number;
  pool: number;
  serverLog: 'info' | 'silent';
  clientFetch: 'lean' | 'global';
  serverNodeOptions: string[];
  keep: boolean;
  reuse: boolean;
  procedures: Procedure[];
  modes: Mode[];
  profile: boolean;
}

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      scenario: { type: 'string', default: 'standard' },
      'mark-iterations': { type: 'string', default: '20' },
      scale: { type: 'string', default: 'full' },
      seconds: { type: 'string', default: '12' },
      rounds: { type: 'string', default: '3' },
      concurrency: { type: 'string', default: '16' },
      pool: { type: 'string', default: '10' },
      'server-log': { type: 'string', default: 'info' },
      'client-fetch': { type: 'string', default: 'lean' },
      // Mirrors the heap limit `npm start` sets (package.json), so the http run measures the server as deployed.
      'server-node-options': { type: 'string', default: '--max-old-space-size=192' },
      keep: { type: 'boolean', default: false },
      reuse: { type: 'boolean', default: false },
      procedures: { type: 'string' },
      modes: { type: 'string', default: modes.join(',') },
      profile: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  const positive = (name: string, value: string) => {
    const n = Number(value);
    if (!Number.isFinite(n) || n <= 0) fail(`--${name} must be a positive number`);
    return n;
  };
  if (values.help) {
    console.log(usage);
    process.exit(0);
  }
  if (values.scenario !== 'standard' && values.scenario !== 'read-state') fail('--scenario must be standard or read-state');
  if (values.scale !== 'small' && values.scale !== 'full') fail('--scale must be small or full');
  if (values['server-log'] !== 'info' && values['server-log'] !== 'silent') fail('--server-log must be info or silent');
  if (values['client-fetch'] !== 'lean' && values['client-fetch'] !== 'global') fail('--client-fetch must be lean or global');
  const readState = values.scenario === 'read-state';
  return {
    scenario: values.scenario,
    markIterations: Math.round(positive('mark-iterations', values['mark-iterations'])),
    readStateProcedures: readState ? listOf('procedures', values.procedures ?? readStateProcedures.join(','), readStateProcedures) : [],
    scale: values.scale,
    seconds: positive('seconds', values.seconds),
    rounds: Math.round(positive('rounds', values.rounds)),
    concurrency: Math.round(positive('concurrency', values.concurrency)),
    pool: Math.round(positive('pool', values.pool)),
    serverLog: values['server-log'],
    clientFetch: values['client-fetch'],
    serverNodeOptions: values['server-node-options'].split(/\s+/).filter(Boolean),
    keep: values.keep || values.reuse,
    reuse: values.reuse,
    procedures: readState ? [] : listOf('procedures', values.procedures ?? procedures.join(','), procedures),
    modes: [...new Set<Mode>(['raw', ...listOf('modes', values.modes, modes)])],
    profile: values.profile,
  };
}

function listOf<T extends string>(name: string, value: string, allowed: readonly T[]): T[] {
  const items = value.split(',').map((v) => v.trim()).filter(Boolean);
  for (const item of items) if (!allowed.includes(item as T)) fail(`--${name}: ${item} is not one of ${allowed.join(', ')}`);
  return allowed.filter((a) => items.includes(a));
}

function fail(message: string): never {
  console.error(`bench: ${message}\n\n${usage}`);
  process.exit(2);
}

interface PhaseRequest {
  workload: Workload;
  procedure: Procedure;
  durationMs: number;
  concurrency: number;
  seed: number;
}

/** One way of calling the procedures, with its own pool and counters. */
interface Runner {
  run: (request: PhaseRequest) => Promise<PhaseResult>;
  counters: () => Promise<DriverCounters>;
  /** CPU milliseconds used so far by the processes making and serving the calls (not the database). */
  appCpuMs: () => Promise<number>;
  /** HTTP only: CPU milliseconds of the server process alone. */
  serverCpuMs?: () => Promise<number>;
  close: () => Promise<void>;
}

const ownCpuMs = async () => {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
};

/** A runner whose calls are made in this process. */
const inProcess = (invoke: (call: Call) => Promise<unknown>) => (request: PhaseRequest) => runPhase({ ...request, invoke });

/**
 * The floor: postgres.js alone, the captured SQL in the same scoped transaction (BEGIN, set_config, query, COMMIT;
 * for whatsNew and whatsNewCount the probe, then the statement of the plan it chose).
 */
function rawRunner(url: string, pool: number, templates: Templates): Runner {
  const counters = newCounters();
  const sql = postgres(url, { max: pool, onnotice: () => {}, ...countingDriverOptions(counters) });
  // Prepared, as postgres.js prepares its tagged-template queries (unsafe() does not by default).
  const run = (tx: postgres.TransactionSql, template: StatementTemplate, call: Call, since?: string) =>
    tx.unsafe(template.text, bindParams(template, call, since) as never[], { prepare: true });
  return {
    run: inProcess((call) =>
      sql.begin(async (tx) => {
        await run(tx, templates.scope, call);
        const template = templates[call.procedure];
        if (template.kind === 'single') return run(tx, template.statement, call);
        const [probe] = await run(tx, template.probe, call);
        return run(tx, template.plans[planOfProbe(probe!)], call, String(probe!.since));
      }),
    ),
    counters: async () => ({ ...counters }),
    appCpuMs: ownCpuMs,
    close: () => sql.end({ timeout: 5 }),
  };
}

/** Server-side callers: tRPC, the RLS middleware and drizzle, as a host app or a test would call them. */
function callerRunner(url: string, pool: number, appRole: string): Runner {
  const counters = newCounters();
  const handle: DbHandle = createDb({ url, poolSize: pool, driverOptions: countingDriverOptions(counters) });
  return {
    run: inProcess((call) => {
      const caller = createCaller(createContextInner({ db: handle.db, session: call.session, appRole }));
      switch (call.procedure) {
        case 'recordView':
          return caller.recordView(call.input);
        case 'viewsForSkills':
          return caller.viewsForSkills(call.input);
        case 'whatsNew':
          return caller.whatsNew(call.input);
        case 'whatsNewCount':
          return caller.whatsNewCount(call.input);
        case 'changeSummary':
          return caller.changeSummary(call.input);
        case 'markAllSeen':
          return caller.markAllSeen(call.input);
      }
    }),
    counters: async () => ({ ...counters }),
    appCpuMs: ownCpuMs,
    close: () => handle.close(),
  };
}


/** Starts a bench script as `npm start` starts the server: node --import tsx, plus any extra Node flags. */
function forkTs(script: string, env: Record<string, string>, profile: boolean, nodeFlags: string[] = []): ChildProcess {
  return fork(path.join(here, script), [], {
    execArgv: ['--import', 'tsx', ...nodeFlags, ...(profile ? ['--cpu-prof', `--cpu-prof-dir=${path.join(here, 'results', 'profiles')}`] : [])],
    env: { ...process.env, ...env },
    // The server's per-request log lines go to /dev/null, as a production log shipper would take them away.
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
}

/** Resident set size of a process from /proc: current and the kernel's high-water mark (bytes). */
async function rssOf(pid: number): Promise<{ rss: number; hwm: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

/** The HTTP server and the client in two processes of their own; the server's RSS sampled while it works. */
async function httpRunner(
  url: string,
  options: Options,
  appRole: string,
): Promise<Runner & { peakRss: () => Promise<number>; peakMemory: () => Record<string, number> }> {
  const secret = randomBytes(32).toString('base64url');
  const serverConfig: ServerConfig = {
    url,
    poolSize: options.pool,
    appRole,
    secret,
    logLevel: options.serverLog,
    userCacheTtlMs: 60 * 60_000,
  };
  const server = forkTs(
    'http-server.ts',
    { BENCH_SERVER_CONFIG: JSON.stringify(serverConfig), NODE_ENV: 'production' },
    options.profile,
    options.serverNodeOptions,
  );
  const ready = await ask<Extract<ServerMessage, { type: 'ready' }>>(server, null, 'ready');
  const clientConfig: ClientConfig = { url: ready.url, scale: options.scale, secret, fetch: options.clientFetch };
  const client = forkTs('http-client.ts', { BENCH_CLIENT_CONFIG: JSON.stringify(clientConfig) }, options.profile);
  await ask<ClientMessage>(client, null, 'ready');
  const serverPid = server.pid!;
  let peak = 0;
  /** Largest process.memoryUsage() figures the server reported (at phase boundaries), for the JSON. */
  const peakMemory: Record<string, number> = {};
  const sampler = setInterval(() => {
    rssOf(serverPid).then(
      ({ rss }) => (peak = Math.max(peak, rss)),
      () => {},
    );
  }, 100);
  sampler.unref();
  return {
    // The client process runs whole phases with the same workload (it rebuilds it from the scale).
    run: ({ procedure, durationMs, concurrency, seed }) =>
      ask<Extract<ClientMessage, { type: 'result' }>>(client, { type: 'phase', procedure, durationMs, concurrency, seed } satisfies ClientRequest, 'result').then(
        (m) => m.result,
      ),
    counters: async () => {
      const reply = await ask<Extract<ServerMessage, { type: 'counters' }>>(server, { type: 'counters' }, 'counters');
      for (const [key, bytes] of Object.entries(reply.memory)) peakMemory[key] = Math.max(peakMemory[key] ?? 0, bytes);
      return reply.counters;
    },
    peakMemory: () => peakMemory,
    appCpuMs: async () => (await processCpuMs(serverPid)) + (await processCpuMs(client.pid!)),
    serverCpuMs: () => processCpuMs(serverPid),
    peakRss: async () => Math.max(peak, (await rssOf(serverPid)).hwm),
    close: async () => {
      clearInterval(sampler);
      client.send({ type: 'close' } satisfies ClientRequest);
      server.send({ type: 'close' });
      await Promise.all([once(client), once(server)]);
    },
  };
}

function once(child: ChildProcess): Promise<void> {
  return child.exitCode !== null ? Promise.resolve() : new Promise((resolve) => child.once('exit', () => resolve()));
}

interface Measured {
  phases: PhaseResult[];
  counters: DriverCounters;
  appCpuMs: number;
  dbCpuMs: number;
  /** HTTP only: the server's share of appCpuMs. */
  serverCpuMs: number;
}

interface Bench {
  workload: Workload;
  runners: Partial<Record<Mode, Runner>>;
  options: Options;
  backends: BackendCpu;
}

let seedCounter = 1;

/** One phase of one procedure in one mode: a short unmeasured warm-up, then `ms` measured. */
async function phase(bench: Bench, mode: Mode, procedure: Procedure, ms: number, into: Measured): Promise<void> {
  const runner = bench.runners[mode]!;
  const run = (durationMs: number) =>
    runner.run({ workload: bench.workload, procedure, durationMs, concurrency: bench.options.concurrency, seed: seedCounter++ });
  await run(500);
  const before = await runner.counters();
  const [app0, db0, server0] = [await runner.appCpuMs(), await bench.backends.ms(), (await runner.serverCpuMs?.()) ?? 0];
  const result = await run(ms);
  const [app1, db1, server1] = [await runner.appCpuMs(), await bench.backends.ms(), (await runner.serverCpuMs?.()) ?? 0];
  into.serverCpuMs += server1 - server0;
  const delta = diffCounters(await runner.counters(), before);
  into.appCpuMs += app1 - app0;
  into.dbCpuMs += db1 - db0;
  into.phases.push(result);
  into.counters.statements += delta.statements;
  into.counters.roundTrips += delta.roundTrips;
  into.counters.authStatements += delta.authStatements;
}

const emptyMeasured = (): Measured => ({ phases: [], counters: newCounters(), appCpuMs: 0, dbCpuMs: 0, serverCpuMs: 0 });

interface Row extends Summary {
  procedure: Procedure;
  mode: Mode;
  /** Throughput relative to raw. */
  ratio: number | null;
  statementsPerCall: number;
  roundTripsPerCall: number;
  /** CPU microseconds per call in the app's processes (bench process; or HTTP server + client) and in Postgres. */
  appCpuUs: number;
  dbCpuUs: number;
  /** HTTP only: the server's part of appCpuUs (the rest is the client process). */
  serverCpuUs: number | null;
  authStatements: number;
  firstError: string | null;
}

function toRow(procedure: Procedure, mode: Mode, m: Measured): Omit<Row, 'ratio'> {
  const s = summarize(m.phases);
  const calls = s.ops + s.errors;
  return {
    procedure,
    mode,
    ...s,
    statementsPerCall: (m.counters.statements - m.counters.authStatements) / calls,
    roundTripsPerCall: m.counters.roundTrips / calls,
    appCpuUs: (m.appCpuMs * 1000) / calls,
    dbCpuUs: (m.dbCpuMs * 1000) / calls,
    serverCpuUs: mode === 'http' ? (m.serverCpuMs * 1000) / calls : null,
    authStatements: m.counters.authStatements,
    firstError: m.phases.find((p) => p.firstError)?.firstError ?? null,
  };
}


const fmt = (n: number, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : '–');
const ms = (n: number) => (Number.isFinite(n) ? (n < 10 ? n.toFixed(2) : n.toFixed(1)) : '–');
const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(0)} MB`;

function resultsTable(rows: Row[]): string {
  const lines = [
    '| procedure | mode | ops/s | p50 ms | p95 ms | p99 ms | ×raw ops/s | statements/call | round trips/call | app CPU µs/call | db CPU µs/call | errors |',
    '|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.procedure} | ${r.mode} | ${fmt(r.opsPerSec, 0)} | ${ms(r.p50)} | ${ms(r.p95)} | ${ms(r.p99)} | ${r.ratio === null ? '–' : fmt(r.ratio, 2)} | ${fmt(r.statementsPerCall, 2)} | ${fmt(r.roundTripsPerCall, 2)} | ${fmt(r.appCpuUs, 0)}${r.serverCpuUs === null ? '' : ` (server ${fmt(r.serverCpuUs, 0)})`} | ${fmt(r.dbCpuUs, 0)} | ${r.errors} |`,
    );
  }
  return lines.join('\n');
}

interface ScalingRow {
  procedure: Procedure;
  mode: Mode;
  small: Summary;
  full: Summary;
  p95Ratio: number;
  p50Ratio: number;
}

function scalingTable(rows: ScalingRow[]): string {
  const lines = [
    '| procedure | mode | small ops/s | small p50 / p95 ms | full ops/s | full p50 / p95 ms | full/small p50 | full/small p95 |',
    '|---|---|--:|--:|--:|--:|--:|--:|',
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.procedure} | ${r.mode} | ${fmt(r.small.opsPerSec, 0)} | ${ms(r.small.p50)} / ${ms(r.small.p95)} | ${fmt(r.full.opsPerSec, 0)} | ${ms(r.full.p50)} / ${ms(r.full.p95)} | ${fmt(r.p50Ratio, 2)} | ${fmt(r.p95Ratio, 2)} |`,
    );
  }
  return lines.join('\n');
}

interface Target {
  name: string;
  value: string;
  met: boolean;
}

async function machine(adminUrl: string) {
  const cpus = os.cpus();
  const sql = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    const [row] = await sql<{ version: string }[]>`select split_part(version(), ' on ', 1) as version`;
    return {
      cpu: `${cpus[0]?.model ?? 'unknown'} × ${cpus.length}`,
      memory: `${(os.totalmem() / 1024 ** 3).toFixed(0)} GiB`,
      os: `${os.type()} ${os.release()}`,
      node: process.version,
      postgres: row?.version ?? 'PostgreSQL',
    };
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/** Seeds (or, with --reuse, finds) the database of each scale; returns their URLs and seeding times. */
async function prepareDatabases(adminUrl: string, names: Record<Scale['name'], string>, scaleNames: Scale['name'][], options: Options, appRole: string, created: string[]) {
  const urls = {} as Record<Scale['name'], string>;
  const seeding = {} as Record<Scale['name'], SeedTimings | null>;
  for (const name of scaleNames) {
    const scale = scales[name];
    if (options.reuse && (await databaseExists(adminUrl, names[name]))) {
      urls[name] = databaseUrl(adminUrl, names[name]);
      seeding[name] = null;
      created.push(names[name]);
      console.log(`reusing database ${names[name]}`);
      continue;
    }
    const views = scale.tenants * scale.usersPerTenant * scale.viewsPerUser;
    process.stdout.write(
      `seeding ${name}: ${scale.tenants} tenants × ${scale.usersPerTenant} users × ${scale.skillsPerTenant} skills, ${views.toLocaleString('en')} views … `,
    );
    urls[name] = await createDatabase(adminUrl, names[name]);
    created.push(names[name]);
    const s = await seed(urls[name], scale, appRole);
    seeding[name] = s;
    console.log(`${((s.migrateMs + s.seedMs + s.analyzeMs) / 1000).toFixed(1)} s`);
  }
  return { urls, seeding };
}

/**
 * Every procedure × mode, interleaved: rounds of (procedure, mode) phases, the mode order rotating each round. The
 * clearing procedures (markAllSeen) get their own warm-up and rounds after all the others, so the reads are
 * measured on the seeded read state; they themselves mostly find little left to mark after their warm-up (see
 * BENCHMARKS.md; `--scenario read-state` measures them on re-dirtied state).
 */
async function measureModes(bench: Bench, phaseMs: number): Promise<Row[]> {
  const { procedures: procs, modes: ms, rounds } = bench.options;
  const measured = new Map<string, Measured>();
  const slot = (p: Procedure, m: Mode) => measured.get(`${p}/${m}`) ?? measured.set(`${p}/${m}`, emptyMeasured()).get(`${p}/${m}`)!;
  const groups = [procs.filter((p) => !clearingProcedures.includes(p)), procs.filter((p) => clearingProcedures.includes(p))];
  for (const group of groups.filter((g) => g.length > 0)) {
    // Warm-up: JIT, connections, prepared statements and caches for every procedure and mode.
    for (const procedure of group) for (const mode of ms) await phase(bench, mode, procedure, 1500, emptyMeasured());
    for (let round = 0; round < rounds; round++) {
      for (const procedure of group) {
        for (let i = 0; i < ms.length; i++) {
          const mode = ms[(i + round) % ms.length]!;
          await phase(bench, mode, procedure, phaseMs, slot(procedure, mode));
        }
      }
      console.log(`  ${group.join(', ')}: round ${round + 1}/${rounds} done`);
    }
  }
  return procs.flatMap((procedure) => {
    const raw = toRow(procedure, 'raw', slot(procedure, 'raw'));
    return ms.map((mode) => {
      const row = toRow(procedure, mode, slot(procedure, mode));
      return { ...row, ratio: mode === 'raw' ? null : row.opsPerSec / raw.opsPerSec };
    });
  });
}

/** The same phases on the small and the full data set, interleaved, alternating which goes first. */
async function measureScaling(benches: Record<Scale['name'], Bench>, procs: Procedure[], ms: Mode[], phaseMs: number): Promise<ScalingRow[]> {
  const measured = new Map<string, Measured>();
  const slot = (key: string) => measured.get(key) ?? measured.set(key, emptyMeasured()).get(key)!;
  for (const procedure of procs) for (const mode of ms) await phase(benches.small, mode, procedure, 1500, emptyMeasured());
  const rounds = benches.full.options.rounds;
  for (let round = 0; round < rounds; round++) {
    for (const procedure of procs) {
      for (const mode of ms) {
        const order: Scale['name'][] = round % 2 === 0 ? ['small', 'full'] : ['full', 'small'];
        for (const s of order) await phase(benches[s], mode, procedure, phaseMs, slot(`${procedure}/${mode}/${s}`));
      }
    }
  }
  return procs.flatMap((procedure) =>
    ms.map((mode) => {
      const small = summarize(slot(`${procedure}/${mode}/small`).phases);
      const full = summarize(slot(`${procedure}/${mode}/full`).phases);
      return { procedure, mode, small, full, p95Ratio: full.p95 / small.p95, p50Ratio: full.p50 / small.p50 };
    }),
  );
}

function evaluateTargets(rows: Row[], scaling: ScalingRow[], peakRss: number | null): Target[] {
  const targets: Target[] = [];
  const row = (p: Procedure, m: Mode) => rows.find((r) => r.procedure === p && r.mode === m);
  for (const r of rows.filter((r) => r.mode === 'caller')) {
    targets.push({ name: `caller/raw ops/s ≥ 0.85: ${r.procedure}`, value: fmt(r.ratio!, 2), met: r.ratio! >= 0.85 });
  }
  for (const r of rows.filter((r) => r.mode === 'http' && (r.procedure === 'recordView' || r.procedure === 'viewsForSkills'))) {
    targets.push({ name: `http/raw ops/s ≥ 0.5: ${r.procedure}`, value: fmt(r.ratio!, 2), met: r.ratio! >= 0.5 });
  }
  for (const s of scaling.filter((s) => s.mode === 'caller')) {
    targets.push({ name: `full/small p95 ≤ 1.5: ${s.procedure}`, value: fmt(s.p95Ratio, 2), met: s.p95Ratio <= 1.5 });
  }
  if (peakRss !== null) targets.push({ name: 'server peak RSS ≤ 200 MB (http run)', value: mb(peakRss), met: peakRss <= 200 * 1024 * 1024 });
  for (const p of procedures) {
    const app = [row(p, 'caller'), row(p, 'http')].filter((r) => r !== undefined);
    if (app.length === 0) continue;
    const worst = Math.max(...app.map((r) => r.roundTripsPerCall));
    const statements = Math.max(...app.map((r) => r.statementsPerCall));
    targets.push({
      name: `database round trips per call ≤ 4 (BEGIN and COMMIT included, auth check excluded): ${p}`,
      value: `${fmt(worst, 2)} round trips, ${fmt(statements, 2)} statements`,
      met: worst <= 4 + 1e-9 && statements <= 4 + 1e-9,
    });
  }
  return targets;
}

async function main() {
  const options = parseOptions();
  const adminUrl = process.env.DATABASE_URL;
  if (!adminUrl) {
    console.error(
      'bench: DATABASE_URL is not set. Point it at a PostgreSQL ≥ 15 server as a role that may create databases\n' +
        '(a superuser, e.g. DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npm run bench). The benchmark\n' +
        'creates fresh databases there, seeds them as that role and drops them at the end (unless --keep).',
    );
    process.exit(2);
  }
  const appRole = process.env.DB_APP_ROLE || DEFAULT_APP_ROLE;
  if (options.scenario === 'read-state') {
    const { seconds, rounds, markIterations, keep, reuse, readStateProcedures: procs } = options;
    process.exitCode = await runReadState(adminUrl, { seconds, rounds, markIterations, keep, reuse, procedures: procs, resultName: 'read-state' }, appRole);
    return;
  }
  const started = new Date();
  const loadBefore = os.loadavg();
  const main = options.scale;
  const compare = main === 'full';
  const scaleNames: Scale['name'][] = compare ? ['small', 'full'] : ['small'];
  const dbNames: Record<Scale['name'], string> = { small: 'skillviews_bench_small', full: 'skillviews_bench_full' };
  const created: string[] = [];
  const toClose: { close: () => Promise<void> }[] = [];
  let interrupted = false;
  const cleanup = async () => {
    await Promise.allSettled(toClose.splice(0).map((r) => r.close()));
    if (!options.keep) for (const name of created.splice(0)) await dropDatabase(adminUrl, name).catch(() => {});
    else if (created.length) console.log(`kept databases: ${created.join(', ')}`);
  };
  const onSignal = () => {
    if (interrupted) return;
    interrupted = true;
    console.error('\nbench: interrupted, cleaning up');
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    if (loadBefore[0]! > 1.5) {
      console.warn(`warning: load average ${loadBefore.map((l) => l.toFixed(1)).join(' ')}: other processes are using the CPU; ratios within the run stay comparable, absolute numbers do not`);
    }
    const { urls, seeding } = await prepareDatabases(adminUrl, dbNames, scaleNames, options, appRole, created);
    const templates = await captureStatements(appRole);
    const benchFor = (scale: Scale['name'], ms: Mode[]): Bench => {
      const runners: Bench['runners'] = {};
      if (ms.includes('raw')) toClose.push((runners.raw = rawRunner(urls[scale], options.pool, templates)));
      if (ms.includes('caller')) toClose.push((runners.caller = callerRunner(urls[scale], options.pool, appRole)));
      const backends = new BackendCpu(urls[scale]);
      toClose.push(backends);
      return { workload: new Workload(scales[scale]), options, runners, backends };
    };
    const bench = benchFor(main, options.modes);
    const http = options.modes.includes('http') ? await httpRunner(urls[main], options, appRole) : null;
    if (http) toClose.push((bench.runners.http = http));

    const phaseMs = (options.seconds * 1000) / options.rounds;
    console.log(
      `measuring ${options.procedures.join(', ')} × ${options.modes.join(', ')} at ${main} scale: ${options.concurrency} concurrent callers, ` +
        `pool ${options.pool}, ${options.rounds} interleaved rounds × ${(phaseMs / 1000).toFixed(1)} s`,
    );
    const rows = await measureModes(bench, phaseMs);
    const peakRss = http ? await http.peakRss() : null;
    const serverMemory = http ? http.peakMemory() : null;
    if (http) {
      await http.close();
      toClose.splice(toClose.indexOf(http), 1);
    }

    let scaling: ScalingRow[] = [];
    const scalingProcs = scalingProcedures.filter((p) => options.procedures.includes(p));
    const scalingMs = scalingModes.filter((m) => options.modes.includes(m));
    if (compare && scalingProcs.length > 0) {
      console.log(`measuring scaling: ${scalingProcs.join(', ')} on small vs full, ${scalingMs.join(' and ')} mode`);
      scaling = await measureScaling({ small: benchFor('small', scalingMs), full: bench }, scalingProcs, scalingMs, phaseMs * 0.75);
    }
    const plans = await explain(urls[main], templates, bench.workload, options.procedures, 99);
    await Promise.allSettled(toClose.splice(0).map((r) => r.close()));
    const loadAfter = os.loadavg();

    const targets = evaluateTargets(rows, scaling, peakRss);
    const errors = rows.reduce((n, r) => n + r.errors, 0);
    const m = await machine(adminUrl);
    const report = [
      `## skill-views benchmark (${main} scale, ${started.toISOString()})`,
      '',
      `Machine: ${m.cpu}, ${m.memory} RAM, ${m.os}, Node ${m.node}, ${m.postgres}. ` +
        `Load average before / after: ${loadBefore[0]!.toFixed(1)} / ${loadAfter[0]!.toFixed(1)}.`,
      `Data: ${seeding[main] ? Object.entries(seeding[main].rows).map(([t, n]) => `${t} ${n.toLocaleString('en')}`).join(', ') : 'reused from an earlier run (--reuse)'}.`,
      `Load: ${options.concurrency} concurrent callers, pool ${options.pool} per mode, ${options.rounds} interleaved rounds, ${options.seconds} s measured per procedure per mode; ` +
        `viewsForSkills with 100 ids, whatsNew limit 20. Server log level: ${options.serverLog}; HTTP client fetch: ${options.clientFetch}; server Node flags: ${options.serverNodeOptions.join(' ') || 'none'}.`,
      '',
      resultsTable(rows),
      '',
      ...(peakRss !== null && serverMemory
        ? [
            `Server peak RSS during the http run: ${mb(peakRss)} (largest V8 heap seen ${mb(serverMemory.heapTotal ?? 0)}, ` +
              `external ${mb(serverMemory.external ?? 0)}).`,
            '',
          ]
        : []),
      ...(scaling.length ? ['### Scaling: small (200,000 views) vs full (2,000,000 views)', '', scalingTable(scaling), ''] : []),
      '### Targets',
      '',
      ...targets.map((t) => `- ${t.met ? '✅' : '❌'} ${t.name}: ${t.value}`),
      ...(errors ? ['', `⚠️ ${errors} calls failed; first error: ${rows.find((r) => r.firstError)?.firstError}`] : []),
      '',
      `### Query plans (${main} scale, as the app role in a scoped transaction, 6th execution of a prepared statement)`,
      '',
      ...options.procedures.flatMap((p) => [`#### ${p}`, '', '```', plans[p], '```', '']),
    ].join('\n');
    console.log(`\n${report}`);

    const resultsDir = path.join(here, 'results');
    await mkdir(resultsDir, { recursive: true });
    const stamp = started.toISOString().replace(/[:.]/g, '-');
    const json = { startedAt: started.toISOString(), machine: m, loadBefore, loadAfter, options, seeding, rows, peakRssBytes: peakRss, serverMemory, scaling, targets, plans };
    await writeFile(path.join(resultsDir, `${stamp}-${main}.json`), JSON.stringify(json, null, 2));
    await writeFile(path.join(resultsDir, `latest-${main}.md`), report + '\n');
    console.log(`results: bench/results/${stamp}-${main}.json, bench/results/latest-${main}.md`);
    process.exitCode = errors > 0 ? 1 : 0;
  } finally {
    if (!interrupted) await cleanup();
  }
}

await main();
