// `npm run bench:layers`: where the HTTP path's server CPU goes, layer by layer, for one read (changeSummary).
//
//   fastify  Fastify answering a fixed body of the same size: the HTTP floor, no tRPC
//   trpc-official  tRPC's own Fastify plugin with this app's initTRPC (superjson, error formatter) and a no-op procedure
//   trpc     the same no-op procedure through this app's tRPC route (server/trpc-fastify.ts)
//   caller   the real changeSummary through createCaller, no HTTP (driven inside the child process)
//   app      the real server (buildServer, JWT authenticator) answering the real changeSummary
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
const layers: Layer[] = ['fastify', 'trpc-official', 'trpc', 'caller', 'app'];
const DATABASE = 'skillviews_bench_layers';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '4' },
    rounds: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '16' },
    help: { type: 'boolean', default: false },
  },
});
if (values.help || !process.env.DATABASE_URL) {
  console.log(`usage: DATABASE_URL=postgres://… npm run bench:layers -- [--seconds 4] [--rounds 3] [--concurrency 16]
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
  console.log(`\nchangeSummary, ${concurrency} concurrent callers, ${rounds} × ${seconds} s per layer, interleaved.\n`);
  console.log('| layer | calls/s | CPU µs/call (server process) | client µs/call |');
  console.log('|---|--:|--:|--:|');
  for (const layer of layers) {
    const r = row(layer);
    const client = layer === 'caller' ? '–' : perCall(layer, 'clientMicros').toFixed(0);
    console.log(`| ${layer} | ${((r.calls / r.ms) * 1000).toFixed(0)} | ${perCall(layer, 'serverMicros').toFixed(0)} | ${client} |`);
  }
  const trpcOverHttp = perCall('trpc', 'serverMicros') - perCall('fastify', 'serverMicros');
  const httpOverCaller = perCall('app', 'serverMicros') - perCall('caller', 'serverMicros');
  console.log(`\nThe app's tRPC route / tRPC's Fastify plugin, server CPU per call: ${(perCall('trpc', 'serverMicros') / perCall('trpc-official', 'serverMicros')).toFixed(2)}.`);
  console.log(`tRPC's HTTP handling over bare Fastify: ${trpcOverHttp.toFixed(0)} µs/call; the app over HTTP minus the same call through createCaller: ${httpOverCaller.toFixed(0)} µs/call.`);
} finally {
  await dropDatabase(adminUrl, DATABASE);
}
process.exit(0);
