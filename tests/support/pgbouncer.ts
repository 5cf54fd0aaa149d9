// A real PgBouncer (Debian's package) in transaction mode in front of the test Postgres, on a free port with its own config.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import postgres from 'postgres';

export interface PgBouncer {
  /** postgres://user@127.0.0.1:<port>/<database> through the pooler. */
  urlFor: (directUrl: string) => string;
  port: number;
  stop: () => Promise<void>;
}

/** The pgbouncer binary on PATH (Debian: /usr/sbin/pgbouncer), or null. */
export function findPgBouncer(): string | null {
  for (const candidate of [process.env.PGBOUNCER_BIN, '/usr/sbin/pgbouncer', '/usr/bin/pgbouncer']) {
    if (candidate && spawnSync(candidate, ['--version']).status === 0) return candidate;
  }
  const which = spawnSync('sh', ['-c', 'command -v pgbouncer']);
  const found = which.stdout?.toString().trim();
  return which.status === 0 && found ? found : null;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/**
 * Starts PgBouncer in transaction mode in front of `directUrl`'s server: `poolSize` server connections per
 * database and user (smaller than the tests' concurrency, so transactions really move between server
 * connections), trust auth for `users`. As root it drops to the `postgres` user (PgBouncer refuses root).
 */
export async function startPgBouncer(
  directUrl: string,
  { poolSize = 4, users = ['postgres'] }: { poolSize?: number; users?: string[] } = {},
): Promise<PgBouncer> {
  const binary = findPgBouncer();
  if (!binary) throw new Error('pgbouncer is not installed (apt-get install -y pgbouncer)');
  const target = new URL(directUrl);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'skill-views-pgbouncer-'));
  await chmod(dir, 0o777);
  const port = await freePort();
  const ini = path.join(dir, 'pgbouncer.ini');
  await writeFile(path.join(dir, 'users.txt'), users.map((u) => `"${u}" ""`).join('\n') + '\n');
  await writeFile(
    ini,
    [
      '[databases]',
      `* = host=${target.hostname} port=${target.port || 5432}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = trust',
      `auth_file = ${path.join(dir, 'users.txt')}`,
      'pool_mode = transaction',
      `default_pool_size = ${poolSize}`,
      'max_client_conn = 1000',
      'server_reset_query =',
      `logfile = ${path.join(dir, 'pgbouncer.log')}`,
      `pidfile = ${path.join(dir, 'pgbouncer.pid')}`,
      '',
    ].join('\n'),
  );
  const asRoot = process.getuid?.() === 0;
  const child: ChildProcess = spawn(binary, [...(asRoot ? ['-u', 'postgres'] : []), ini], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const urlFor = (url: string) => {
    const u = new URL(url);
    u.hostname = '127.0.0.1';
    u.port = String(port);
    return u.toString();
  };
  const stop = async () => {
    if (child.exitCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGINT');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    await rm(dir, { recursive: true, force: true });
  };
  // Ready when a query goes through it.
  const probe = postgres(urlFor(directUrl), { max: 1, prepare: false, onnotice: () => {}, connect_timeout: 2 });
  try {
    for (let attempt = 0; ; attempt++) {
      if (child.exitCode !== null) throw new Error(`pgbouncer exited (${child.exitCode}): ${stderr}`);
      try {
        await probe`select 1`;
        break;
      } catch (err) {
        if (attempt > 50) throw new Error(`pgbouncer did not become ready: ${(err as Error).message} ${stderr}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  } catch (err) {
    await stop();
    throw err;
  } finally {
    await probe.end({ timeout: 1 });
  }
  return { urlFor, port, stop };
}
