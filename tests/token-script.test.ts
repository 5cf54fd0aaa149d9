// `npm run token` as a child process: a token the server's secret verifies (AUTH_SECRET or the dev secret file), usage errors with exit code 2, and the user check on Postgres.
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { jwtVerify } from 'jose';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { createDb } from '../db/client.ts';
import { secretKey } from '../server/auth.ts';
import { cleanEnv, runToEnd } from './support/child-process.ts';
import { createTenant } from './support/factory.ts';

const SECRET = 'token-script-test-secret-0123456789abcdef';
const tenant = randomUUID();
const user = randomUUID();

function env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return cleanEnv({ NODE_ENV: 'test', ...extra });
}

const run = runToEnd;

/** The script itself (what `npm run token` runs), without npm's start-up cost. */
const token = (args: string[], environment: NodeJS.ProcessEnv) => run(process.execPath, ['--import', 'tsx', 'server/token.ts', ...args], environment);

/** The token's claims if `secret` verifies it as the server does (HS256, sub, tid and exp required). */
async function verify(jwt: string, secret: string) {
  const { payload, protectedHeader } = await jwtVerify(jwt, secretKey(secret), { algorithms: ['HS256'], requiredClaims: ['sub', 'tid', 'exp'] });
  return { payload, protectedHeader };
}

const tmpDirs: string[] = [];
afterAll(async () => {
  for (const dir of tmpDirs) await rm(dir, { recursive: true, force: true });
});

describe('npm run token', () => {
  it('prints only a token signed with AUTH_SECRET for the tenant and user, valid 24h by default or for --expires', async () => {
    const [standard, short] = await Promise.all([
      token(['--tenant', tenant, '--user', user], env({ AUTH_SECRET: SECRET })),
      token(['--tenant', tenant.toUpperCase(), '--user', user, '--expires', '2h'], env({ AUTH_SECRET: SECRET })),
    ]);
    const now = Date.now() / 1000;
    for (const [result, lifetime] of [
      [standard, 24 * 3600],
      [short, 2 * 3600],
    ] as const) {
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\n$/);
      const { payload, protectedHeader } = await verify(result.stdout.trim(), SECRET);
      expect(protectedHeader.alg).toBe('HS256');
      expect(payload).toMatchObject({ sub: user, tid: tenant });
      expect(payload.exp! - payload.iat!).toBe(lifetime);
      expect(Math.abs(payload.iat! - now)).toBeLessThan(60);
    }
    await expect(verify(standard.stdout.trim(), `${SECRET}-other`)).rejects.toThrow();
  }, 30_000);

  it('outside production without AUTH_SECRET signs with the dev secret npm start keeps beside PGLITE_DIR (through npm run -s)', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'skill-views-token-'));
    tmpDirs.push(dir);
    const devSecret = 'dev-secret-kept-by-npm-start-0123456789abc';
    await writeFile(path.join(dir, 'dev-auth-secret'), `${devSecret}\n`);
    const pgliteDir = path.join(dir, 'pglite');
    const [viaNpm, production] = await Promise.all([
      run('npm', ['run', '-s', 'token', '--', '--tenant', tenant, '--user', user], env({ NODE_ENV: 'development', PGLITE_DIR: pgliteDir })),
      token(['--tenant', tenant, '--user', user], env({ NODE_ENV: 'production', PGLITE_DIR: pgliteDir })),
    ]);
    expect(viaNpm.code, viaNpm.stderr).toBe(0);
    expect(viaNpm.stdout.trim().split('\n')).toHaveLength(1); // TOKEN=$(npm run -s token -- …) gets the token alone
    expect((await verify(viaNpm.stdout.trim(), devSecret)).payload).toMatchObject({ sub: user, tid: tenant });
    // Production never falls back to a file.
    expect(production.code).toBe(1);
    expect(production.stdout).toBe('');
    expect(production.stderr).toMatch(/AUTH_SECRET: is required when NODE_ENV=production/);
  }, 30_000);

  it('exits 2 with the usage on stderr and nothing on stdout for missing, unknown or bad arguments', async () => {
    const cases: [string[], RegExp][] = [
      [[], /--tenant is required\n--user is required/],
      [['--tenant', 'acme', '--user', user], /must be uuids/],
      [['--tenant', tenant, '--user', user, '--expires=-1h'], /--expires must be a duration/],
      [['--tenant', tenant, '--user', user, '--admin'], /Unknown option '--admin'/],
      [['--tenant', tenant, '--user'], /argument missing/],
    ];
    const results = await Promise.all(cases.map(([args]) => token(args, env({ AUTH_SECRET: SECRET }))));
    results.forEach((result, i) => {
      const [args, message] = cases[i]!;
      expect(result.code, `${args.join(' ')}: ${result.stderr}`).toBe(2);
      expect(result.stdout).toBe('');
      expect(result.stderr).toMatch(message);
      expect(result.stderr).toContain('Usage: npm run token -- --tenant <uuid> --user <uuid>');
    });
  }, 30_000);

  it('with DATABASE_URL set, says so and exits 1 when the database cannot be asked (and --no-check mints anyway)', async () => {
    const unreachable = env({ AUTH_SECRET: SECRET, DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none', REQUEST_TIMEOUT_MS: '2000' });
    const [checked, unchecked] = await Promise.all([
      token(['--tenant', tenant, '--user', user], unreachable),
      token(['--tenant', tenant, '--user', user, '--no-check'], unreachable),
    ]);
    expect(checked.code).toBe(1);
    expect(checked.stdout).toBe('');
    expect(checked.stderr).toMatch(/Could not check the user in DATABASE_URL/);
    expect(unchecked.code, unchecked.stderr).toBe(0);
    expect((await verify(unchecked.stdout.trim(), SECRET)).payload).toMatchObject({ sub: user, tid: tenant });
  }, 30_000);

  const pgUrl = inject('pgUrl');
  it.skipIf(!pgUrl)('on Postgres, checks the user exists in that tenant: a user of another tenant or an unknown one is refused with exit 1', async () => {
    const handle = createDb({ url: pgUrl!, poolSize: 1 });
    const [a, b] = await Promise.all([createTenant(handle.db, { userCount: 1 }), createTenant(handle.db, { userCount: 1 })]).finally(() => handle.close());
    const pg = env({ AUTH_SECRET: SECRET, DATABASE_URL: pgUrl! });
    const [known, otherTenant, unknown] = await Promise.all([
      token(['--tenant', a.tenantId, '--user', a.userIds[0]!], pg),
      token(['--tenant', a.tenantId, '--user', b.userIds[0]!], pg),
      token(['--tenant', a.tenantId, '--user', randomUUID()], pg),
    ]);
    expect(known.code, known.stderr).toBe(0);
    expect((await verify(known.stdout.trim(), SECRET)).payload).toMatchObject({ sub: a.userIds[0], tid: a.tenantId });
    for (const refused of [otherTenant, unknown]) {
      expect(refused.code, refused.stderr).toBe(1);
      expect(refused.stdout).toBe('');
      expect(refused.stderr).toMatch(/No user [0-9a-f-]{36} in tenant [0-9a-f-]{36} in DATABASE_URL/);
    }
  }, 30_000);
});
