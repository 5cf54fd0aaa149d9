// An on-disk PGlite data directory made from the migrated template: initdb on disk is slow, loading a dump is not.
import { readFile } from 'node:fs/promises';
import { PGlite } from '@electric-sql/pglite';
import { inject } from 'vitest';

/** Writes the migrated test template into `dir` (which must not exist yet or be empty), then closes it. */
export async function preparePgliteDir(dir: string): Promise<void> {
  const dump = await readFile(inject('pgliteTemplate'));
  const pglite = await PGlite.create({ dataDir: dir, loadDataDir: new Blob([dump]) });
  await pglite.close();
}
