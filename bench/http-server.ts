// Benchmark child process: the HTTP server (buildServer) on its own, with its database traffic counted.
import { createDb } from '../db/client.ts';
import { buildServer } from '../server/app.ts';
import { createJwtAuthenticator } from '../server/auth.ts';
import { assertRlsEnforced } from '../server/startup-check.ts';
import { countingDriverOptions, newCounters } from './instrument.ts';

export interface ServerConfig {
  url: string;
  poolSize: number;
  appRole: string;
  secret: string;
  logLevel: 'info' | 'silent';
  /** The authenticator's memory of accepted tokens (signature and user checks); long enough that measured calls hit it. */
  userCacheTtlMs: number;
}

export type ServerMessage =
  | { type: 'ready'; url: string }
  | { type: 'counters'; counters: ReturnType<typeof newCounters>; memory: NodeJS.MemoryUsage };

const config = JSON.parse(process.env.BENCH_SERVER_CONFIG ?? 'null') as ServerConfig | null;
if (!config || !process.send) throw new Error('bench/http-server.ts is started by bench/run.ts');
const send = process.send.bind(process);

const counters = newCounters();
const handle = createDb({ url: config.url, poolSize: config.poolSize, driverOptions: countingDriverOptions(counters) });
await assertRlsEnforced(handle.db, config.appRole);
const app = buildServer({
  db: handle.db,
  authenticate: createJwtAuthenticator({
    secret: config.secret,
    db: handle.db,
    appRole: config.appRole,
    userCacheTtlMs: config.userCacheTtlMs,
  }),
  appRole: config.appRole,
  panel: false,
  exposeErrors: false,
  // As in production (one line per request, to stdout, which the benchmark sends to /dev/null), or off.
  logger: { level: config.logLevel },
});
const address = await app.listen({ port: 0, host: '127.0.0.1' });

process.on('message', (message: { type: 'counters' } | { type: 'close' }) => {
  if (message.type === 'counters') {
    send({ type: 'counters', counters: { ...counters }, memory: process.memoryUsage() } satisfies ServerMessage);
  } else {
    void app
      .close()
      .then(() => handle.close())
      .finally(() => process.exit(0));
  }
});
send({ type: 'ready', url: address } satisfies ServerMessage);
