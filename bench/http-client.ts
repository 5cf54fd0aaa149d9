// Benchmark child process: callers using the typed client (createClient) against the HTTP server, one client each.
import { createClient, type SkillViewsClient } from '../client/index.ts';
import { signToken } from '../server/auth.ts';
import { leanFetch } from './lean-fetch.ts';
import { runPhase, type PhaseResult } from './measure.ts';
import { scales, type Scale } from './seed.ts';
import { Workload, type Call, type Procedure } from './workload.ts';

export interface ClientConfig {
  url: string;
  scale: Scale['name'];
  secret: string;
  /** lean: leanFetch (node:http, keep-alive); global: Node's built-in fetch (undici, keep-alive by default). */
  fetch: 'lean' | 'global';
}

export type ClientRequest = { type: 'phase'; procedure: Procedure; durationMs: number; concurrency: number; seed: number } | { type: 'close' };
export type ClientMessage = { type: 'ready' } | { type: 'result'; result: PhaseResult };

const config = JSON.parse(process.env.BENCH_CLIENT_CONFIG ?? 'null') as ClientConfig | null;
if (!config || !process.send) throw new Error('bench/http-client.ts is started by bench/run.ts');
const send = process.send.bind(process);

const workload = new Workload(scales[config.scale]);
const tokens = new Map<string, string>();
for (const s of workload.sessions) tokens.set(s.userId, await signToken(s, config.secret, '2h'));

// One client per concurrent caller, as each caller stands for one browser: its batching never merges calls of others.
const current: string[] = [];
const clients: SkillViewsClient[] = [];
const fetchImpl = config.fetch === 'lean' ? leanFetch() : undefined;
function clientFor(caller: number): SkillViewsClient {
  return (clients[caller] ??= createClient({
    url: `${config!.url}/trpc`,
    getToken: () => current[caller],
    ...(fetchImpl ? { fetch: fetchImpl } : {}),
  }));
}

function invoke(call: Call, caller: number): Promise<unknown> {
  current[caller] = tokens.get(call.session.userId)!;
  const client = clientFor(caller);
  switch (call.procedure) {
    case 'recordView':
      return client.recordView.mutate(call.input);
    case 'viewsForSkills':
      return client.viewsForSkills.query(call.input);
    case 'whatsNew':
      return client.whatsNew.query(call.input);
    case 'whatsNewCount':
      return client.whatsNewCount.query(call.input);
    case 'changeSummary':
      return client.changeSummary.query(call.input);
    case 'markAllSeen':
      return client.markAllSeen.mutate(call.input);
  }
}

// Every session signs in once before anything is measured: the server confirms each user exists once and caches it.
const queue = [...workload.sessions];
await Promise.all(
  Array.from({ length: 16 }, async (_, caller) => {
    for (let s = queue.pop(); s; s = queue.pop()) {
      current[caller] = tokens.get(s.userId)!;
      await clientFor(caller).whatsNew.query({ limit: 1 });
    }
  }),
);

process.on('message', (message: ClientRequest) => {
  if (message.type === 'close') process.exit(0);
  void runPhase({ workload, invoke, ...message }).then((result) => send({ type: 'result', result } satisfies ClientMessage));
});
send({ type: 'ready' } satisfies ClientMessage);
