// `npm run bench:start`: the built server (node dist/server/main.js) against the tsx-run one (node --import tsx
// server/main.ts): time from spawn to the first /healthz 200, and RSS after a few idle seconds, alternating runs.
// Each run gets a fresh copy of one migrated and seeded PGlite directory (so both do the same start-up work), and,
// with DATABASE_URL set, also runs against that (migrated) Postgres database.
import { spawn } from 'node:child_process';
import { cp, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({ options: { runs: { type: 'string', default: '5' } } });
const runs = Number(values.runs);

const variants = {
  built: ['--max-old-space-size=192', 'dist/server/main.js'],
  tsx: ['--max-old-space-size=192', '--import', 'tsx', 'server/main.ts'],
} as const;

async function rssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024;
}

async function once(variant: keyof typeof variants, env: NodeJS.ProcessEnv): Promise<{ readyMs: number; rssMb: number }> {
  const started = performance.now();
  const child = spawn(process.execPath, [...variants[variant]], { cwd: root, env: { ...env, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  try {
    let url: string | undefined;
    while (!url) {
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) url = m[1];
      else if (child.exitCode !== null) throw new Error(`exited: ${out}`);
      else await new Promise((r) => setTimeout(r, 5));
    }
    for (;;) {
      const res = await fetch(`${url}/healthz`).catch(() => null);
      if (res?.status === 200) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    const readyMs = performance.now() - started;
    await new Promise((r) => setTimeout(r, 3_000));
    return { readyMs, rssMb: await rssMb(child.pid!) };
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main() {
  const template = await mkdtemp(path.join(os.tmpdir(), 'bench-start-'));
  const seeded = path.join(template, 'seeded');
  // One start migrates and seeds the template (built server; the result is the same either way).
  await once('built', { ...process.env, DATABASE_URL: '', PGLITE_DIR: seeded });
  const setups: { name: string; env: () => Promise<{ env: NodeJS.ProcessEnv; done: () => Promise<void> }> }[] = [
    {
      name: 'PGlite (seeded copy)',
      env: async () => {
        const dir = path.join(template, `run-${Math.random().toString(36).slice(2)}`);
        await cp(seeded, dir, { recursive: true });
        return { env: { ...process.env, DATABASE_URL: '', PGLITE_DIR: dir }, done: () => rm(dir, { recursive: true, force: true }) };
      },
    },
  ];
  if (process.env.DATABASE_URL) {
    setups.push({ name: 'PostgreSQL', env: async () => ({ env: { ...process.env, MIGRATE_ON_START: 'true' }, done: async () => {} }) });
  }
  const load = os.loadavg().map((l) => l.toFixed(2)).join(' / ');
  console.log(`bench:start: ${runs} alternating runs per variant, load average ${load}`);
  console.log('| database | variant | first /healthz 200, median ms (min–max) | idle RSS, median MB (min–max) |');
  console.log('|---|---|--:|--:|');
  for (const setup of setups) {
    const results: Record<string, { readyMs: number; rssMb: number }[]> = { built: [], tsx: [] };
    for (let i = 0; i < runs; i++) {
      for (const variant of (i % 2 === 0 ? ['built', 'tsx'] : ['tsx', 'built']) as (keyof typeof variants)[]) {
        const { env, done } = await setup.env();
        try {
          results[variant]!.push(await once(variant, env));
        } finally {
          await done();
        }
      }
    }
    for (const variant of ['built', 'tsx'] as const) {
      const r = results[variant]!;
      const ready = r.map((x) => x.readyMs);
      const rss = r.map((x) => x.rssMb);
      console.log(
        `| ${setup.name} | ${variant} | ${median(ready).toFixed(0)} (${Math.min(...ready).toFixed(0)}–${Math.max(...ready).toFixed(0)}) | ${median(rss).toFixed(0)} (${Math.min(...rss).toFixed(0)}–${Math.max(...rss).toFixed(0)}) |`,
      );
    }
    const b = results.built!;
    const t = results.tsx!;
    console.log(
      `ratios built/tsx (${setup.name}): start ${(median(b.map((x) => x.readyMs)) / median(t.map((x) => x.readyMs))).toFixed(2)}, RSS ${(median(b.map((x) => x.rssMb)) / median(t.map((x) => x.rssMb))).toFixed(2)}`,
    );
  }
  console.log(`load average after: ${os.loadavg().map((l) => l.toFixed(2)).join(' / ')}`);
  await rm(template, { recursive: true, force: true });
}

await main();
