// The package as a host installs it: `npm run build`, `npm pack`, `npm install <tarball>` in a fresh project outside
// the repository, then every entry point imported by its exports name and used from plain `node` (no tsx).
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { root } from './support/child-process.ts';

const npmVersion = (() => {
  const r = spawnSync('npm', ['--version'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
})();
if (!npmVersion) console.warn('tests/package.test.ts: skipped, `npm` is not on PATH');

/**
 * The environment children get: no NODE_OPTIONS (so nothing like tsx's loader reaches the consumer's `node`), none of
 * the npm_* variables of an `npm test` around us, and no database or secret of the developer's.
 */
function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (/^(npm_|NODE_OPTIONS$|DATABASE_URL$|DATABASE_DIRECT_URL$|AUTH_SECRET$|PGLITE_DIR$|PORT$|NODE_ENV$)/i.test(name)) continue;
    env[name] = value;
  }
  return env;
}

/** Runs `command args` in `cwd`; resolves with stdout, rejects with the output if it fails or outlives `timeoutMs`. */
function run(command: string, args: string[], cwd: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(stdout);
      else reject(new Error(`${command} ${args.join(' ')} in ${cwd} ended with ${signal ?? `code ${code}`}\n${stdout}\n${stderr}`));
    });
  });
}

/** What the consumer runs: every subpath imported by name, then the fetch handler and the server put to use. */
const consumerScript = `
const names = ['skill-views', 'skill-views/client', 'skill-views/react', 'skill-views/db', 'skill-views/server', 'skill-views/fetch'];
const report = { node: process.version, tsx: process.execArgv.join(' ') + ' ' + (process.env.NODE_OPTIONS ?? ''), resolved: {}, exports: {} };
const mods = {};
for (const name of names) {
  report.resolved[name] = import.meta.resolve(name);
  mods[name] = await import(name);
  report.exports[name] = Object.fromEntries(Object.entries(mods[name]).map(([key, value]) => [key, typeof value]));
}
report.sameSignToken = mods['skill-views/fetch'].signToken === mods['skill-views/server'].signToken;

const db = mods['skill-views/db'];
const { createFetchHandler, createJwtAuthenticator, signToken } = mods['skill-views/fetch'];
const handle = db.createDb({ pgliteDir: 'memory://' });
try {
  report.migrated = (await db.migrate(handle)).applied;
  await db.assertRlsEnforced(handle.db, db.DEFAULT_APP_ROLE);
  const [user] = (await db.seedDemo(handle.db)).users;
  const secret = 'the-host-apps-secret-of-at-least-32-characters';
  const handler = createFetchHandler({
    db: handle.db,
    authenticate: createJwtAuthenticator({ secret, db: handle.db, appRole: db.DEFAULT_APP_ROLE }),
    endpoint: '/api/trpc',
  });
  const trackingPreference = async (token) => {
    const input = encodeURIComponent(JSON.stringify({ json: {} }));
    const res = await handler(new Request('http://host.test/api/trpc/trackingPreference?input=' + input, { headers: { authorization: 'Bearer ' + token } }));
    return { status: res.status, body: await res.json() };
  };
  const session = { tenantId: user.tenantId, userId: user.userId };
  report.signed = await trackingPreference(await signToken(session, secret));
  report.otherSecret = await trackingPreference(await signToken(session, 'not-the-host-apps-secret-but-as-long-as-it'));
} finally {
  await handle.close();
}

const { start, loadConfig } = mods['skill-views/server'];
const server = await start(loadConfig({ PORT: '0', HOST: '127.0.0.1', PGLITE_DIR: process.argv[2], LOG_LEVEL: 'warn' }));
try {
  const res = await fetch(server.url + '/healthz');
  report.healthz = { status: res.status, body: await res.json() };
} finally {
  await server.close();
}
console.log(JSON.stringify(report));
`;

interface ConsumerReport {
  node: string;
  tsx: string;
  resolved: Record<string, string>;
  exports: Record<string, Record<string, string>>;
  sameSignToken: boolean;
  migrated: string[];
  signed: { status: number; body: unknown };
  otherSecret: { status: number; body: { error: { json: { data: { code: string } } } } };
  healthz: { status: number; body: unknown };
}

describe('the npm package', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  it.skipIf(!npmVersion)(
    'builds, packs without sources, installs into a fresh project and runs every entry point on plain node',
    async () => {
      await run('npm', ['run', 'build'], root, 60_000);

      const packDir = await mkdtemp(path.join(os.tmpdir(), 'skill-views-pack-'));
      dirs.push(packDir);
      // --ignore-scripts: built just above; prepack would build again and print into the JSON.
      const [packed] = JSON.parse(await run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', packDir], root, 60_000)) as {
        filename: string;
        files: { path: string }[];
      }[];
      const files = packed!.files.map((f) => f.path);
      // Compiled code only: no TypeScript sources, tests, benchmarks or the example app.
      expect(files.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))).toEqual([]);
      expect(files.filter((f) => !f.startsWith('dist/')).sort()).toEqual(['README.md', 'package.json']);
      expect(files.filter((f) => /^dist\/(tests|bench|client\/example)\//.test(f))).toEqual([]);
      // Every migration, beside the compiled migrator that reads them.
      const migrations = readdirSync(path.join(root, 'db', 'migrations'), { recursive: true, withFileTypes: true })
        .filter((e) => e.isFile())
        .map((e) => path.posix.join('dist', path.relative(root, path.join(e.parentPath, e.name)).split(path.sep).join('/')));
      expect(migrations.length).toBeGreaterThan(2);
      for (const file of migrations) expect(files).toContain(file);

      const app = await mkdtemp(path.join(os.tmpdir(), 'skill-views-consumer-'));
      dirs.push(app);
      expect(path.relative(root, app).startsWith('..')).toBe(true);
      await writeFile(path.join(app, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
      await run('npm', ['install', path.join(packDir, packed!.filename), '--no-audit', '--no-fund', '--prefer-offline'], app, 150_000);
      await writeFile(path.join(app, 'check.mjs'), consumerScript);
      const output = await run(process.execPath, ['check.mjs', path.join(app, 'pglite')], app, 60_000);
      const report = JSON.parse(output.trim().split('\n').at(-1)!) as ConsumerReport;

      expect(report.tsx.trim()).toBe('');
      const installed = pathToFileURL(path.join(app, 'node_modules', 'skill-views', 'dist')).href + '/';
      for (const [name, url] of Object.entries(report.resolved)) {
        expect(url.startsWith(installed), `${name} resolves to ${url}`).toBe(true);
        expect(url.endsWith('.js'), `${name} resolves to ${url}`).toBe(true);
      }
      const expected: Record<string, string[]> = {
        'skill-views': ['createCaller', 'createContextFactory', 'createContextInner'],
        'skill-views/client': ['createClient', 'createLinks', 'errorCode'],
        'skill-views/react': ['useSkillViewsLive', 'SkillViewsProvider', 'useWhatsNewFeed', 'createQueryClient'],
        'skill-views/db': ['createDb', 'migrate', 'seedDemo', 'assertRlsEnforced', 'findRlsProblems'],
        'skill-views/server': ['start', 'buildServer', 'loadConfig', 'createJwtAuthenticator', 'signToken'],
        'skill-views/fetch': ['createFetchHandler', 'createJwtAuthenticator', 'signToken'],
      };
      for (const [name, members] of Object.entries(expected)) {
        for (const member of members) expect(report.exports[name]?.[member], `${name} exports ${member}`).toBe('function');
      }
      expect(report.exports['skill-views']?.appRouter).toBe('object'); // tRPC 11's router
      expect(report.exports['skill-views/db']?.users).toBe('object'); // the schema's tables
      expect(report.sameSignToken).toBe(true); // one module instance behind both entry points

      const journal = JSON.parse(readFileSync(path.join(root, 'db', 'migrations', 'meta', '_journal.json'), 'utf8')) as {
        entries: { tag: string }[];
      };
      expect(report.migrated).toEqual(journal.entries.map((e) => e.tag));
      expect(report.signed).toEqual({ status: 200, body: { result: { data: { json: { enabled: true } } } } });
      expect(report.otherSecret.status).toBe(401);
      expect(report.otherSecret.body.error.json.data.code).toBe('UNAUTHORIZED');
      expect(report.healthz).toEqual({ status: 200, body: { status: 'ok' } });
    },
    240_000,
  );
});
