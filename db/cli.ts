// What the owner's command-line scripts share (npm run db:migrate, db:prune): the database to open, and how they fail.
import type { Config } from '../server/config.ts';
import { createDb, type DbHandle } from './client.ts';
import { DataDirLockedError } from './pglite-lock.ts';

type ErrorClass = abstract new (...args: never[]) => Error;

/**
 * Opens the owner's database (DATABASE_DIRECT_URL, else DATABASE_URL, one unnamed-statement connection; or the
 * embedded database in PGLITE_DIR), runs `task`, and closes it. Bad configuration or a locked data directory exits 1
 * at once, naming the problem; an error
 * of one of the `expected` classes prints its message and sets exit code 1 (anything else is a crash, with a stack).
 */
export async function runAsOwner(task: (handle: DbHandle, config: Config) => Promise<void>, expected: ErrorClass[]): Promise<void> {
  const { loadConfigOrReport } = await import('../server/config.ts');
  const config = loadConfigOrReport();
  if (!config) process.exit(1);
  const url = config.DATABASE_DIRECT_URL ?? config.DATABASE_URL;
  let handle: DbHandle;
  try {
    handle = url ? createDb({ url, poolSize: 1, prepare: false }) : createDb({ pgliteDir: config.PGLITE_DIR });
  } catch (err) {
    if (!(err instanceof DataDirLockedError)) throw err;
    console.error(err.message);
    process.exit(1);
  }
  try {
    await task(handle, config);
  } catch (err) {
    if (!expected.some((kind) => err instanceof kind)) throw err;
    console.error((err as Error).message);
    process.exitCode = 1;
  } finally {
    await handle.close();
  }
}
