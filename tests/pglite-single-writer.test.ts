// One writer per PGlite data directory, with real processes: a second server, migrate or seed refuses and names the holder's pid, the holder keeps serving, nothing acknowledged is lost, and a stale lock is taken over.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient, type SkillViewsClient } from '../client/index.ts';
import { demoIds } from '../db/seed.ts';
import { root, runProcess, type Proc } from './support/child-process.ts';
import { preparePgliteDir } from './support/pglite-dir.ts';

const LOCK_FILE = 'skill-views.lock';
const SECRET = 'pglite-single-writer-test-secret-0123456789';

// The pglite-lock module is imported where it is used, so the process tests still run (and fail) on a tree without it.
type LockModule = typeof import('../db/pglite-lock.ts');
const lockModule = (): Promise<LockModule> => import('../db/pglite-lock.ts');

const running = new Set<Proc>();

function envFor(pgliteDir: string): NodeJS.ProcessEnv {
  const { DATABASE_URL: _url, DATABASE_DIRECT_URL: _direct, ...rest } = process.env;
  return { ...rest, PGLITE_DIR: pgliteDir, PORT: '0', NODE_ENV: 'test', AUTH_SECRET: SECRET, LOG_LEVEL: 'warn' };
}

/** A child process, killed at the end of the suite if it is still running. */
function spawnProc(command: string, args: string[], env: NodeJS.ProcessEnv): Proc {
  const proc = runProcess(command, args, env);
  running.add(proc);
  void proc.exited.then(() => running.delete(proc));
  return proc;
}

/** `npm start`'s command, run directly so that the child's pid is the server's own (npm and tsx's bin wrap it). */
const spawnServer = (pgliteDir: string) => spawnProc(process.execPath, ['--import', 'tsx', 'server/main.ts'], envFor(pgliteDir));

function output(p: Proc) {
  return `--- stdout\n${p.stdout()}\n--- stderr\n${p.stderr()}`;
}

/** The exit of `p`, or a failure (after killing it) if it is still running after `timeoutMs`: it should have refused the directory. */
const exitWithin = (p: Proc, timeoutMs: number) => p.exitWithin(timeoutMs);

interface Server {
  proc: Proc;
  url: string;
  /** Printed demo tokens: Ada (Acme) first, Hank (Globex) fourth. */
  tokens: string[];
  client: (token: string) => SkillViewsClient;
}

async function startServer(pgliteDir: string): Promise<Server> {
  const proc = spawnServer(pgliteDir);
  const deadline = Date.now() + 45_000;
  let exited = false;
  void proc.exited.then(() => (exited = true));
  // The banner is one write; the curl example is its last line.
  while (!/curl .*\/trpc\/whatsNew/.test(proc.stdout())) {
    if (exited) throw new Error(`server exited before it was listening:\n${output(proc)}`);
    if (Date.now() > deadline) throw new Error(`server did not start within 45 s:\n${output(proc)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const url = /skill-views is listening on (http:\/\/\S+)/.exec(proc.stdout())![1]!;
  const tokens = [...proc.stdout().matchAll(/^ {4}Bearer ([A-Za-z0-9_\-.]+)$/gm)].map((m) => m[1]!);
  expect(tokens).toHaveLength(5);
  return { proc, url, tokens, client: (token) => createClient({ url: `${url}/trpc`, getToken: () => token }) };
}

async function stopServer(server: Server) {
  server.proc.child.kill('SIGTERM');
  const exit = await exitWithin(server.proc, 15_000);
  expect(exit, output(server.proc)).toEqual({ code: 0, signal: null });
}

const lockPid = (pgliteDir: string): number | null =>
  existsSync(path.join(pgliteDir, LOCK_FILE)) ? (JSON.parse(readFileSync(path.join(pgliteDir, LOCK_FILE), 'utf8')) as { pid: number }).pid : null;

/** The pid of a process that has exited (and so no longer exists). */
async function deadPid(): Promise<number> {
  const p = spawnProc(process.execPath, ['-e', ''], process.env);
  await p.exited;
  return p.pid;
}

const tmpDirs: string[] = [];
async function freshDir(label: string): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `skill-views-single-writer-${label}-`));
  tmpDirs.push(dir);
  return dir;
}

/** A data directory already migrated (from the run's template), as after a first start: starting skips initdb. */
async function preparedPgliteDir(label: string): Promise<string> {
  const dir = path.join(await freshDir(label), 'pglite');
  await preparePgliteDir(dir);
  return dir;
}

afterAll(async () => {
  for (const p of running) p.child.kill('SIGKILL');
  await Promise.all([...running].map((p) => p.exited));
  for (const dir of tmpDirs) await rm(dir, { recursive: true, force: true });
});

describe('a data directory held by a running server', () => {
  let dir: string;
  let first: Server;
  let next: Server | undefined;
  let ada: SkillViewsClient;
  let hank: SkillViewsClient;
  /** The highest viewCount acknowledged so far, per user and skill. */
  const acknowledged = new Map<string, number>();
  const skills = { ada: demoIds.tsFundamentals, hank: demoIds.doomsdayDevices };

  async function view(who: 'ada' | 'hank') {
    const { view } = await (who === 'ada' ? ada : hank).recordView.mutate({ skillId: skills[who] });
    if (!view) throw new Error('recordView was not tracked');
    acknowledged.set(who, Math.max(acknowledged.get(who) ?? 0, view.viewCount));
    return view;
  }

  beforeAll(async () => {
    dir = await preparedPgliteDir('held');
    first = await startServer(dir);
    ada = first.client(first.tokens[0]!);
    hank = first.client(first.tokens[3]!);
  }, 60_000);
  afterAll(async () => {
    if (next) await stopServer(next);
  });

  it('a second server exits 1 within seconds and names the first server pid, while the first keeps acknowledging writes', async () => {
    const before = await view('ada');
    const startedAt = Date.now();
    const second = spawnServer(dir);
    let exited = false;
    const exit = exitWithin(second, 20_000).finally(() => (exited = true));
    // Writes go on while the second process starts up and is refused.
    let during = 0;
    while (!exited) {
      await view('ada');
      during++;
    }
    const { code } = await exit;
    const elapsed = Date.now() - startedAt;

    expect(code, output(second)).toBe(1);
    expect(second.stderr()).toContain(`is in use by process ${first.proc.pid}`);
    expect(second.stdout()).not.toMatch(/listening/);
    expect(elapsed).toBeLessThan(15_000);
    expect(during).toBeGreaterThan(0);
    const after = await view('ada');
    expect(after.viewCount).toBe(before.viewCount + during + 1);
    expect(lockPid(dir), 'the lock file names the first server').toBe(first.proc.pid);
  }, 30_000);

  it('db:migrate and db:seed refuse it too, naming the pid, and the server keeps serving', async () => {
    // What `npm run db:migrate` and `npm run db:seed` run (tsx db/….ts), without npm's and tsx's wrapper processes.
    const migrate = spawnProc(process.execPath, ['--import', 'tsx', 'db/migrate.ts'], envFor(dir));
    const seed = spawnProc(process.execPath, ['--import', 'tsx', 'db/seed.ts'], envFor(dir));
    const [migrated, seeded] = await Promise.all([exitWithin(migrate, 20_000), exitWithin(seed, 20_000)]);

    for (const [p, exit] of [[migrate, migrated], [seed, seeded]] as const) {
      expect(exit.code, output(p)).not.toBe(0);
      expect(p.stderr()).toContain(`is in use by process ${first.proc.pid}`);
      expect(p.stdout()).not.toMatch(/applied|up to date|migrated|seeded/);
    }
    const health = await fetch(`${first.url}/healthz`);
    expect(health.status).toBe(200);
    await view('hank');
    expect(lockPid(dir)).toBe(first.proc.pid);
  }, 30_000);

  it('after more acknowledged writes, SIGTERM stops the first server with exit 0 and releases the lock', async () => {
    const N = 30;
    // In parallel (batched into few HTTP requests) and one by one.
    await Promise.all(Array.from({ length: N / 2 }, (_, i) => view(i % 2 ? 'ada' : 'hank')));
    for (let i = 0; i < N / 2; i++) await view(i % 2 ? 'ada' : 'hank');
    const lockWhileServing = lockPid(dir);

    await stopServer(first);
    expect(first.proc.stdout()).toContain('SIGTERM received');
    expect(lockWhileServing, 'the lock file names the first server while it serves').toBe(first.proc.pid);
    expect(existsSync(path.join(dir, LOCK_FILE)), 'the lock is released on a clean exit').toBe(false);
  }, 30_000);

  it('a stale lock, left by a process that no longer exists, is taken over: a new server starts on the directory', async () => {
    const dead = await deadPid();
    await writeFile(path.join(dir, LOCK_FILE), JSON.stringify({ pid: dead, host: os.hostname(), since: new Date(Date.now() - 60_000).toISOString() }));
    next = await startServer(dir);
    expect(lockPid(dir), 'the new server holds the lock').toBe(next.proc.pid);
  }, 60_000);

  it('every write the first server acknowledged is there after the restart', async () => {
    expect(next, 'the restarted server').toBeDefined();
    const [adaViews, hankViews] = await Promise.all([
      next!.client(next!.tokens[0]!).viewsForSkills.query({ skillIds: [skills.ada] }),
      next!.client(next!.tokens[3]!).viewsForSkills.query({ skillIds: [skills.hank] }),
    ]);
    expect(adaViews.get(skills.ada)?.viewCount).toBe(acknowledged.get('ada'));
    expect(hankViews.get(skills.hank)?.viewCount).toBe(acknowledged.get('hank'));
    // And it writes: the directory is fully usable.
    const { view } = await next!.client(next!.tokens[0]!).recordView.mutate({ skillId: skills.ada });
    expect(view?.viewCount).toBe(acknowledged.get('ada')! + 1);
    const restarted = next!;
    next = undefined;
    await stopServer(restarted);
    expect(existsSync(path.join(dir, LOCK_FILE))).toBe(false);
  }, 30_000);
});

describe('lockDataDir', () => {
  it('refuses a second lock in the same process, however the directory is spelled, naming this process', async () => {
    const { lockDataDir, DataDirLockedError } = await lockModule();
    const base = await freshDir('unit-same');
    const dir = path.join(base, 'data');
    const lock = lockDataDir(dir);
    await symlink(dir, path.join(base, 'alias'));
    for (const spelling of [dir, path.relative(process.cwd(), dir), path.join(base, 'alias')]) {
      const err = (() => {
        try {
          lockDataDir(spelling);
        } catch (e) {
          return e;
        }
      })();
      expect(err).toBeInstanceOf(DataDirLockedError);
      expect((err as InstanceType<typeof DataDirLockedError>).pid).toBe(process.pid);
      expect((err as Error).message).toContain(`process ${process.pid} (this process)`);
    }
    lock.release();
  });

  it('removes the lock file on release; the directory can then be locked again; release is idempotent', async () => {
    const { lockDataDir } = await lockModule();
    const dir = await freshDir('unit-release');
    const lock = lockDataDir(dir);
    expect(lockPid(dir)).toBe(process.pid);
    lock.release();
    expect(existsSync(path.join(dir, LOCK_FILE))).toBe(false);
    const again = lockDataDir(dir);
    lock.release(); // a second release of the old handle must not drop the new lock
    expect(lockPid(dir)).toBe(process.pid);
    again.release();
    expect(existsSync(path.join(dir, LOCK_FILE))).toBe(false);
  });

  it('refuses a lock held by another live process or written on another host, naming its pid', async () => {
    const { lockDataDir, DataDirLockedError } = await lockModule();
    const dir = await freshDir('unit-live');
    const file = path.join(dir, LOCK_FILE);
    await writeFile(file, JSON.stringify({ pid: process.ppid, host: os.hostname() }));
    expect(() => lockDataDir(dir)).toThrow(DataDirLockedError);
    expect(() => lockDataDir(dir)).toThrow(`in use by process ${process.ppid}.`);
    const dead = await deadPid();
    await writeFile(file, JSON.stringify({ pid: dead, host: `not-${os.hostname()}` }));
    expect(() => lockDataDir(dir)).toThrow(`in use by process ${dead} on host not-${os.hostname()}`);
    expect(JSON.parse(await readFile(file, 'utf8'))).toMatchObject({ pid: dead });
  });

  it('takes over another host’s lock once its holder has stopped refreshing it (a container recreated under a new hostname), and keeps its own fresh', async () => {
    const { lockDataDir } = await lockModule();
    const dir = await freshDir('unit-other-host');
    const file = path.join(dir, LOCK_FILE);
    await writeFile(file, JSON.stringify({ pid: 4242, host: 'old-container' }));
    const longAgo = new Date(Date.now() - 60_000);
    await utimes(file, longAgo, longAgo);
    const lock = lockDataDir(dir);
    try {
      expect(JSON.parse(await readFile(file, 'utf8'))).toMatchObject({ pid: process.pid, host: os.hostname() });
    } finally {
      lock.release();
    }
  });

  it('takes over a lock whose process is gone, and one naming this very pid that this process does not hold (a restarted container)', async () => {
    const { lockDataDir } = await lockModule();
    const dir = await freshDir('unit-stale');
    const file = path.join(dir, LOCK_FILE);
    for (const pid of [await deadPid(), process.pid]) {
      await writeFile(file, JSON.stringify({ pid, host: os.hostname(), since: '2020-01-01T00:00:00.000Z' }));
      const lock = lockDataDir(dir);
      expect(JSON.parse(await readFile(file, 'utf8'))).toMatchObject({ pid: process.pid, host: os.hostname() });
      lock.release();
      expect(existsSync(file)).toBe(false);
    }
  });

  it('waits for a lock file its creator has not written yet instead of deleting it; an old unwritten one is stale', async () => {
    const { lockDataDir } = await lockModule();
    const dir = await freshDir('unit-unwritten');
    const file = path.join(dir, LOCK_FILE);
    // A process that has created the lock file (O_EXCL) and writes its pid a moment later.
    await writeFile(file, '');
    const writer = spawnProc(
      process.execPath,
      ['-e', `setTimeout(() => { require('node:fs').writeFileSync(${JSON.stringify(file)}, JSON.stringify({ pid: process.pid, host: require('node:os').hostname() })); setTimeout(() => {}, 5000); }, 300)`],
      process.env,
    );
    try {
      expect(() => lockDataDir(dir)).toThrow(`in use by process ${writer.pid}.`);
    } finally {
      writer.child.kill('SIGKILL');
      await writer.exited;
    }
    // Left empty by a process that died before writing: taken over once it is clearly old.
    await writeFile(file, '');
    const old = new Date(Date.now() - 60_000);
    await utimes(file, old, old);
    const lock = lockDataDir(dir);
    expect(lockPid(dir)).toBe(process.pid);
    lock.release();
  });

  it('of several processes racing for a stale lock, exactly one wins', async () => {
    const dir = await freshDir('unit-race');
    await writeFile(path.join(dir, LOCK_FILE), JSON.stringify({ pid: await deadPid(), host: os.hostname() }));
    // Each racer loads the module, says so, and on "go <time>" spins until that instant and tries; the winner
    // holds the lock until its stdin closes, so no racer can come late and find it free.
    const script = `
      import { lockDataDir } from './db/pglite-lock.ts';
      import { createInterface } from 'node:readline';
      console.log('ready');
      const lines = createInterface({ input: process.stdin });
      lines.once('line', (line) => {
        const at = Number(line.split(' ')[1]);
        while (Date.now() < at);
        try { lockDataDir(${JSON.stringify(dir)}); console.log('won'); }
        catch (err) { console.log(err.name === 'DataDirLockedError' ? 'refused' : 'error ' + err.message); }
      });`;
    const racers = Array.from({ length: 3 }, () => {
      const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: root, stdio: ['pipe', 'pipe', 'inherit'] });
      let out = '';
      child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
      const exited = new Promise((resolve) => child.once('exit', resolve));
      return { child, out: () => out, exited };
    });
    const until = async (done: () => boolean) => {
      for (const deadline = Date.now() + 15_000; !done(); await new Promise((resolve) => setTimeout(resolve, 20))) {
        if (Date.now() > deadline) throw new Error(`racers: ${racers.map((r) => JSON.stringify(r.out())).join(', ')}`);
      }
    };
    try {
      await until(() => racers.every((r) => r.out().includes('ready')));
      const go = `go ${Date.now() + 200}\n`;
      for (const r of racers) r.child.stdin.write(go);
      await until(() => racers.every((r) => r.out().split('\n').length > 2));
    } finally {
      for (const r of racers) r.child.stdin.end();
      await Promise.all(racers.map((r) => r.exited));
    }
    const results = racers.map((r) => r.out().split('\n')[1]);
    expect(results.filter((r) => r === 'won'), results.join(', ')).toHaveLength(1);
    expect(results.filter((r) => r === 'refused')).toHaveLength(2);
  }, 20_000);
});
