// A throwaway PostgreSQL cluster of the test's own (initdb on a free port), for tests that restart the server.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './pgbouncer.ts';

export interface PgCluster {
  /** postgres://postgres@127.0.0.1:<port>/postgres */
  url: string;
  /** The server's log file (crashes of backends are reported there). */
  logFile: string;
  stop: () => void;
  start: () => void;
  /** Removes the cluster (stops it first). */
  destroy: () => Promise<void>;
}

/** The newest installed PostgreSQL bin directory (Debian: /usr/lib/postgresql/<major>/bin), or null. */
export function findPgBin(): string | null {
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return null;
  const majors = readdirSync(base).filter((d) => /^\d+$/.test(d)).sort((a, b) => Number(b) - Number(a));
  for (const major of majors) {
    const bin = path.join(base, major, 'bin');
    if (existsSync(path.join(bin, 'initdb')) && existsSync(path.join(bin, 'pg_ctl'))) return bin;
  }
  return null;
}

/** Runs a PostgreSQL tool as the `postgres` OS user when we are root (the server refuses to run as root). */
function asPostgres(bin: string, tool: string, args: string[]) {
  const command = path.join(bin, tool);
  const asRoot = process.getuid?.() === 0;
  const result = asRoot
    ? spawnSync('runuser', ['-u', 'postgres', '--', command, ...args], { encoding: 'utf8' })
    : spawnSync(command, args, { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`${tool} ${args.join(' ')} failed: ${result.stderr || result.stdout}`);
}

/** True when a throwaway cluster can be made here (PostgreSQL's binaries, and root or the postgres user). */
export function canMakeCluster(): boolean {
  const bin = findPgBin();
  if (!bin) return false;
  if (process.getuid?.() !== 0) return true;
  return spawnSync('id', ['postgres']).status === 0;
}

export async function startCluster(): Promise<PgCluster> {
  const bin = findPgBin();
  if (!bin) throw new Error('PostgreSQL server binaries not found');
  const dir = await mkdtemp(path.join(os.tmpdir(), 'skill-views-cluster-'));
  await chmod(dir, 0o777);
  const data = path.join(dir, 'data');
  const port = await freePort();
  asPostgres(bin, 'initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']);
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=40`;
  const start = () => asPostgres(bin, 'pg_ctl', ['-D', data, '-o', options, '-l', path.join(dir, 'log'), '-w', '-t', '30', 'start']);
  const stop = () => asPostgres(bin, 'pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop']);
  start();
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    logFile: path.join(dir, 'log'),
    start,
    stop,
    destroy: async () => {
      try {
        execFileSync(process.getuid?.() === 0 ? 'runuser' : path.join(bin, 'pg_ctl'), [
          ...(process.getuid?.() === 0 ? ['-u', 'postgres', '--', path.join(bin, 'pg_ctl')] : []),
          '-D',
          data,
          '-m',
          'immediate',
          'stop',
        ], { stdio: 'ignore' });
      } catch {
        // already stopped
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
