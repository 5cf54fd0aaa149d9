// Child process of bench/http-layers.ts: one server variant, reporting its own CPU time on request.
import { fastifyTRPCPlugin } from '@trpc/server/adapters/fastify';
import Fastify from 'fastify';
import { z } from 'zod';
import { createDb } from '../db/client.ts';
import { demoIds } from '../db/seed.ts';
import { buildServer } from '../server/app.ts';
import { createJwtAuthenticator } from '../server/auth.ts';
import { createContextInner } from '../server/context.ts';
import { createCaller } from '../server/router.ts';
import { publicProcedure, router } from '../server/trpc.ts';
import { trpcRoutes } from '../server/trpc-fastify.ts';

export type Layer = 'fastify' | 'trpc-official' | 'trpc' | 'caller' | 'app' | 'app-ops' | 'ops-pair';
export interface LayerServerConfig {
  layer: Layer;
  url: string;
  secret: string;
  appRole: string;
}
export type LayerRequest = { type: 'cpu' } | { type: 'run'; ms: number; concurrency: number } | { type: 'close' };
export type LayerMessage =
  | { type: 'ready'; address: string | null; /** ops-pair: the app's address, then app-ops's */ pair?: [string, string] }
  | { type: 'cpu'; micros: number }
  | { type: 'ran'; calls: number };

const config = JSON.parse(process.env.LAYER_SERVER_CONFIG ?? 'null') as LayerServerConfig | null;
if (!config || !process.send) throw new Error('bench/http-layers-server.ts is started by bench/http-layers.ts');
const send = (message: LayerMessage) => process.send!(message);

/** What changeSummary answers for the demo call, so every layer serialises the same shape. */
const sampleAnswer = {
  skillId: demoIds.tsFundamentals,
  firstView: false,
  lastViewedAt: new Date('2026-01-02T03:04:05.678Z'),
  lastViewedVersion: 1,
  currentVersion: 3,
  changes: [
    { kind: 'version_bump', from: 1, to: 3 },
    { kind: 'new_feedback', count: 2 },
  ],
};

const noop = router({ changeSummary: publicProcedure.input(z.strictObject({ skillId: z.uuid() })).query(() => sampleAnswer) });
/** The no-op layers' context: no session and no database (the no-op procedure is public). */
const noopContext = async () => createContextInner({ db: null as never, session: null });
const handle = config.layer === 'fastify' || config.layer.startsWith('trpc') ? null : createDb({ url: config.url });
let address: string | null = null;
let pair: [string, string] | undefined;
let close = async () => {};

/** The real server, with the operations layer off (app) or on (app-ops). */
function realServer(ops: boolean) {
  return buildServer({
    db: handle!.db,
    authenticate: createJwtAuthenticator({ secret: config!.secret, db: handle!.db, appRole: config!.appRole }),
    appRole: config!.appRole,
    panel: false,
    exposeErrors: false,
    logger: false,
    ...(ops ? { metrics: {}, rateLimit: { perMinute: 1_000_000_000, perIpPerMinute: 60 }, tracing: true } : { tracing: false }),
  });
}

if (config.layer === 'ops-pair') {
  // Both real servers in this one process, driven in turn for short slices: the process's CPU during a slice is
  // that server's, and the two share the process, its JIT state and the machine's drift.
  const off = realServer(false);
  const on = realServer(true);
  pair = [await off.listen({ port: 0, host: '127.0.0.1' }), await on.listen({ port: 0, host: '127.0.0.1' })];
  close = async () => {
    await off.close();
    await on.close();
  };
} else if (config.layer === 'caller') {
  // No HTTP at all: the same call through createCaller, driven from inside this process.
  const session = { tenantId: demoIds.acme, userId: demoIds.ada };
  process.on('message', (message: LayerRequest) => {
    if (message.type !== 'run') return;
    const deadline = performance.now() + message.ms;
    let calls = 0;
    void Promise.all(
      Array.from({ length: message.concurrency }, async () => {
        while (performance.now() < deadline) {
          await createCaller(createContextInner({ db: handle!.db, session })).changeSummary({ skillId: demoIds.tsFundamentals });
          calls++;
        }
      }),
    ).then(() => send({ type: 'ran', calls }));
  });
} else {
  // app: the real server with the operations layer off (no metrics, no rate limits, no spans); app-ops: with
  // /metrics, both rate limiters in memory (a limit no caller reaches, so every call does the limiter's work and
  // passes) and the spans through @opentelemetry/api without an SDK, as in production without a tracing host.
  const app = config.layer === 'app' || config.layer === 'app-ops' ? realServer(config.layer === 'app-ops') : Fastify({ logger: false });
  if (config.layer === 'fastify') {
    // The HTTP floor: Fastify answering a fixed body of the same size, no tRPC.
    const body = JSON.stringify({ result: { data: { json: { ...sampleAnswer, lastViewedAt: sampleAnswer.lastViewedAt.toISOString() } } } });
    app.post('/trpc/:path', async (_request, reply) => reply.type('application/json').send(body));
  } else if (config.layer === 'trpc-official') {
    // The same, through tRPC's own Fastify plugin (which pipes the answer from a web stream), for comparison.
    await app.register(fastifyTRPCPlugin, {
      prefix: '/trpc',
      trpcOptions: { router: noop, createContext: noopContext, allowMethodOverride: true },
    });
  } else if (config.layer === 'trpc') {
    // tRPC over HTTP with this app's initTRPC (superjson, error formatter) and route, and a procedure that does nothing.
    await app.register(trpcRoutes, {
      prefix: '/trpc',
      router: noop,
      createContext: noopContext,
      allowMethodOverride: true,
    });
  }
  address = await app.listen({ port: 0, host: '127.0.0.1' });
  close = () => app.close();
}

process.on('message', (message: LayerRequest) => {
  if (message.type === 'cpu') {
    const { user, system } = process.cpuUsage();
    send({ type: 'cpu', micros: user + system });
  } else if (message.type === 'close') {
    void close()
      .then(() => handle?.close())
      .finally(() => process.exit(0));
  }
});
send({ type: 'ready', address, ...(pair ? { pair } : {}) });
