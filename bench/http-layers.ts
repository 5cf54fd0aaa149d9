// `npm run bench:layers`: where the HTTP path's server CPU goes, layer by layer, for one read (changeSummary).
//
//   fastify  Fastify answering a fixed body of the same size: the HTTP floor, no tRPC
//   trpc-official  tRPC's own Fastify plugin with this app's initTRPC (superjson, error formatter) and a no-op procedure
//   trpc     the same no-op procedure through this app's tRPC route (server/trpc-fastify.ts)
//   caller   the real changeSummary through createCaller, no HTTP (driven inside the child process)
//   app      the real server (buildServer, JWT authenticator) answering the real changeSummary, operations layer off
//   app-ops  the same with metrics, rate limits (memory store) and spans (no SDK) on: their cost is app-ops / app
//
// `--layers app,app-ops` runs only those layers (still interleaved). `--ops-pair` instead runs app and app-ops in
// one child process and drives them in turn, `--slices` times each for `--slice-ms`: the finest interleaving, for
// the operations layer's cost on a busy machine (each slice's CPU is the driven server's; the other is idle).
//
// Each layer runs in a child process started like `npm start` (node --import tsx, 192 MB heap limit);
// this process is the keep-alive HTTP client (node:http, no tRPC client) for the HTTP layers. Layers are
// interleaved over the rounds; the table gives the child's CPU per call, and this client's.
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createDb } from '../db/client.ts';
import { DEFAULT_APP_ROLE, migrate } from '../db/migrate.ts';
import { demoIds, seedDemo } from '../db/seed.ts';
import { signToken } from '../server/auth.ts';
import type { Layer, LayerMessage, LayerRequest, LayerServerConfig } from './http-layers-server.ts';
import { createDatabase, dropDatabase } from './seed.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const allLayers: Layer[] = ['fastify', 'trpc-official', 'trpc', 'caller', 'app', 'app-ops'];
const DATABASE = 'skillviews_bench_layers';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '4' },
    rounds: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '16' },
    layers: { type: 'string', default: allLayers.join(',') },
    'ops-pair': { type: 'boolean', default: false },
    slices: { type: 'string', default: '40' },
    'slice-ms': { type: 'string', default: '1000' },
    help: { type: 'boolean', default: false },
  },
});
const layers = values.layers.split(',').map((l) => l.trim()) as Layer[];
for (const layer of layers) if (!allLayers.includes(layer)) throw new Error(`unknown layer ${layer}; layers: ${allLayers.join(', ')}`);
if (values.help || !process.env.DATABASE_URL) {
  console.log(`usage: DATABASE_URL=postgres://… npm run bench:layers -- [--seconds 4] [--rounds 3] [--concurrency 16] [--layers ${allLayers.join(',')}]
Creates and drops the database ${DATABASE} (demo data) on that server.`);
  process.exit(values.help ? 0 : 1);
}
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);
const concurrency = Number(values.concurrency);
const adminUrl = process.env.DATABASE_URL;

let current: ChildProcess | null = null;
process.on('exit', () => current?.kill());
const url = await createDatabase(adminUrl, DATABASE);
try {
  const handle = createDb({ url });
  await migrate(handle, { appRole: DEFAULT_APP_ROLE });
  await seedDemo(handle.db);
  await handle.close();

  const secret = randomBytes(32).toString('hex');
  const token = await signToken({ tenantId: demoIds.acme, userId: demoIds.ada }, secret, '1h');
  const body = JSON.stringify({ json: { skillId: demoIds.tsFundamentals } });
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const totals = new Map<Layer, { calls: number; ms: number; serverMicros: number; clientMicros: number }>();
  /** Server CPU µs per call of each round, to see the spread. */
  const rounds_ = new Map<Layer, number[]>();

  if (values['ops-pair']) {
    await opsPair();
    layers.length = 0; // nothing else to run
  }

  /** app vs app-ops in one child, alternating slices (the order flips every slice pair). */
  async function opsPair() {
    const child = fork(path.join(here, 'http-layers-server.ts'), [], {
      execArgv: ['--import', 'tsx', '--max-old-space-size=192'],
      env: { ...process.env, LAYER_SERVER_CONFIG: JSON.stringify({ layer: 'ops-pair', url, secret, appRole: DEFAULT_APP_ROLE } satisfies LayerServerConfig) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    current = child;
    const next = <T extends LayerMessage['type']>(type: T, request?: LayerRequest) =>
      new Promise<Extract<LayerMessage, { type: T }>>((resolve) => {
        const onMessage = (message: LayerMessage) => {
          if (message.type !== type) return;
          child.off('message', onMessage);
          resolve(message as Extract<LayerMessage, { type: T }>);
        };
        child.on('message', onMessage);
        if (request) child.send(request);
      });
    const { pair } = await next('ready');
    const [off, on] = pair!;
    await drive(off, 2000);
    await drive(on, 2000);
    const sliceMs = Number(values['slice-ms']);
    const per = { off: [] as number[], on: [] as number[] };
    const sums = { off: { calls: 0, micros: 0 }, on: { calls: 0, micros: 0 } };
    for (let i = 0; i < Number(values.slices); i++) {
      for (const which of i % 2 ? (['on', 'off'] as const) : (['off', 'on'] as const)) {
        const before = (await next('cpu', { type: 'cpu' })).micros;
        const calls = await drive(which === 'off' ? off : on, sliceMs);
        const micros = (await next('cpu', { type: 'cpu' })).micros - before;
        per[which].push(micros / calls);
        sums[which].calls += calls;
        sums[which].micros += micros;
      }
    }
    child.send({ type: 'close' } satisfies LayerRequest);
    await new Promise((resolve) => child.once('exit', resolve));
    const ratios = per.on.map((v, i) => v / per.off[i]!).sort((a, b) => a - b);
    const median = (xs: number[]) => (xs.length % 2 ? xs[(xs.length - 1) / 2]! : (xs[xs.length / 2 - 1]! + xs[xs.length / 2]!) / 2);
    const offMean = sums.off.micros / sums.off.calls;
    const onMean = sums.on.micros / sums.on.calls;
    console.log(`\nchangeSummary, ${concurrency} concurrent callers, app and app-ops in one process, ${values.slices} × ${sliceMs} ms slices each, alternating.\n`);
    console.log('| server | calls | server CPU µs/call (all slices) | median of slices |');
    console.log('|---|--:|--:|--:|');
    console.log(`| app (operations layer off) | ${sums.off.calls} | ${offMean.toFixed(0)} | ${median([...per.off].sort((a, b) => a - b)).toFixed(0)} |`);
    console.log(`| app-ops (metrics, rate limits, spans without SDK) | ${sums.on.calls} | ${onMean.toFixed(0)} | ${median([...per.on].sort((a, b) => a - b)).toFixed(0)} |`);
    console.log(`\napp-ops / app, server CPU per call: ${(onMean / offMean).toFixed(3)} over all slices; median of the paired slices ${median(ratios).toFixed(3)} (quartiles ${ratios[Math.floor(ratios.length / 4)]!.toFixed(3)}–${ratios[Math.floor((3 * ratios.length) / 4)]!.toFixed(3)}).`);
  }

  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < layers.length; i++) {
      const layer = layers[(i + round) % layers.length]!;
      const child = fork(path.join(here, 'http-layers-server.ts'), [], {
        execArgv: ['--import', 'tsx', '--max-old-space-size=192'],
        env: { ...process.env, LAYER_SERVER_CONFIG: JSON.stringify({ layer, url, secret, appRole: DEFAULT_APP_ROLE } satisfies LayerServerConfig) },
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      });
      current = child;
      const ask = <T extends LayerMessage['type']>(request: LayerRequest | null, type: T) =>
        new Promise<Extract<LayerMessage, { type: T }>>((resolve) => {
          const onMessage = (message: LayerMessage) => {
            if (message.type !== type) return;
            child.off('message', onMessage);
            resolve(message as Extract<LayerMessage, { type: T }>);
          };
          child.on('message', onMessage);
          if (request) child.send(request);
        });
      const { address } = await ask(null, 'ready');
      const run = (ms: number) => (address ? drive(address, ms) : ask({ type: 'run', ms, concurrency }, 'ran').then((m) => m.calls));
      await run(1500); // warm-up: JIT, connections, the authenticator's cache
      const serverBefore = (await ask({ type: 'cpu' }, 'cpu')).micros;
      const clientBefore = process.cpuUsage();
      const start = performance.now();
      const calls = await run(seconds * 1000);
      const ms = performance.now() - start;
      const clientUsed = process.cpuUsage(clientBefore);
      const serverUsed = (await ask({ type: 'cpu' }, 'cpu')).micros - serverBefore;
      child.send({ type: 'close' } satisfies LayerRequest);
      await new Promise((resolve) => child.once('exit', resolve));
      const total = totals.get(layer) ?? { calls: 0, ms: 0, serverMicros: 0, clientMicros: 0 };
      total.calls += calls;
      total.ms += ms;
      total.serverMicros += serverUsed;
      total.clientMicros += address ? clientUsed.user + clientUsed.system : 0;
      totals.set(layer, total);
      rounds_.set(layer, [...(rounds_.get(layer) ?? []), serverUsed / calls]);
    }
  }

  /** `concurrency` keep-alive callers sending the same POST until the time is up; every answer must be a 200. */
  async function drive(address: string, ms: number): Promise<number> {
    const deadline = performance.now() + ms;
    let calls = 0;
    const one = () =>
      new Promise<void>((resolve, reject) => {
        const request = http.request(
          `${address}/trpc/changeSummary`,
          {
            method: 'POST',
            agent,
            headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'x-trpc-method-override': 'POST' },
          },
          (response) => {
            response.resume();
            response.on('end', () => (response.statusCode === 200 ? resolve() : reject(new Error(`HTTP ${response.statusCode}`))));
          },
        );
        request.on('error', reject);
        request.end(body);
      });
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (performance.now() < deadline) {
          await one();
          calls++;
        }
      }),
    );
    return calls;
  }

  const row = (layer: Layer) => totals.get(layer)!;
  const perCall = (layer: Layer, key: 'serverMicros' | 'clientMicros') => row(layer)[key] / row(layer).calls;
  if (layers.length > 0) {
    console.log(`\nchangeSummary, ${concurrency} concurrent callers, ${rounds} × ${seconds} s per layer, interleaved.\n`);
    console.log('| layer | calls/s | CPU µs/call (server process) | client µs/call |');
    console.log('|---|--:|--:|--:|');
  }
  for (const layer of layers) {
    const r = row(layer);
    const client = layer === 'caller' ? '–' : perCall(layer, 'clientMicros').toFixed(0);
    console.log(`| ${layer} | ${((r.calls / r.ms) * 1000).toFixed(0)} | ${perCall(layer, 'serverMicros').toFixed(0)} | ${client} |`);
  }
  const has = (...names: Layer[]) => names.every((l) => totals.has(l));
  console.log('');
  if (has('trpc', 'trpc-official')) {
    console.log(`The app's tRPC route / tRPC's Fastify plugin, server CPU per call: ${(perCall('trpc', 'serverMicros') / perCall('trpc-official', 'serverMicros')).toFixed(2)}.`);
  }
  if (has('trpc', 'fastify', 'app', 'caller')) {
    const trpcOverHttp = perCall('trpc', 'serverMicros') - perCall('fastify', 'serverMicros');
    const httpOverCaller = perCall('app', 'serverMicros') - perCall('caller', 'serverMicros');
    console.log(`tRPC's HTTP handling over bare Fastify: ${trpcOverHttp.toFixed(0)} µs/call; the app over HTTP minus the same call through createCaller: ${httpOverCaller.toFixed(0)} µs/call.`);
  }
  if (has('app', 'app-ops')) {
    const ratio = perCall('app-ops', 'serverMicros') / perCall('app', 'serverMicros');
    console.log(`Metrics + rate limits + spans (no SDK), server CPU per call, app-ops / app: ${ratio.toFixed(3)} (${((ratio - 1) * 100).toFixed(1)} % extra).`);
    const perRound = (l: Layer) => rounds_.get(l)!.map((v) => v.toFixed(0)).join(', ');
    console.log(`Per round, server µs/call: app ${perRound('app')}; app-ops ${perRound('app-ops')}.`);
    // Rounds are paired (the two layers run back to back), so a round's ratio cancels most of the machine's drift.
    const paired = rounds_.get('app-ops')!.map((v, i) => v / rounds_.get('app')![i]!).sort((a, b) => a - b);
    const median = paired.length % 2 ? paired[(paired.length - 1) / 2]! : (paired[paired.length / 2 - 1]! + paired[paired.length / 2]!) / 2;
    console.log(`Median of the per-round ratios: ${median.toFixed(3)} (${((median - 1) * 100).toFixed(1)} % extra); range ${paired[0]!.toFixed(2)}–${paired.at(-1)!.toFixed(2)}.`);
  }
  console.log(`Load average (1, 5, 15 min) at the end: ${(await import('node:os')).loadavg().map((l) => l.toFixed(2)).join(', ')}.`);
} finally {
  await dropDatabase(adminUrl, DATABASE);
}
process.exit(0);
