// CPU time spent by processes during a phase, from /proc (Linux): the app's processes and the Postgres backends.
import { readFile } from 'node:fs/promises';
import postgres from 'postgres';

/** User + system CPU time of a process in milliseconds (Linux clock ticks are 10 ms), or 0 if it is gone. */
export async function processCpuMs(pid: number): Promise<number> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return 0;
  }
}

/** Sums the CPU time of the server processes (backends) connected to one database. */
export class BackendCpu {
  private readonly sql: postgres.Sql;

  constructor(url: string) {
    this.sql = postgres(url, { max: 1, onnotice: () => {} });
  }

  async ms(): Promise<number> {
    const rows = await this.sql<{ pid: number }[]>`
      select pid from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()`;
    const times = await Promise.all(rows.map((r) => processCpuMs(r.pid)));
    return times.reduce((a, b) => a + b, 0);
  }

  close(): Promise<void> {
    return this.sql.end({ timeout: 5 });
  }
}
