// One writer per embedded data directory: a lock file in the directory holding the owner's pid, checked for liveness.
import { closeSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';

/** The lock file's name inside a PGlite data directory. */
export const LOCK_FILE = 'skill-views.lock';

/** Another live process holds the data directory. */
export class DataDirLockedError extends Error {
  override name = 'DataDirLockedError';
  constructor(
    readonly dir: string,
    readonly pid: number,
  ) {
    super(
      `The embedded database in ${dir} is in use by process ${pid}` +
        (pid === process.pid ? ' (this process)' : '') +
        `. PGlite allows one process per data directory: stop that process, or use another PGLITE_DIR.`,
    );
  }
}

interface LockContent {
  pid: number;
  host: string;
}

const held = new Set<string>();

/** True when `pid` names a running process on this machine (signal 0 checks without signalling). */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readLock(file: string): LockContent | null {
  try {
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as Partial<LockContent>;
    return typeof parsed.pid === 'number' && Number.isSafeInteger(parsed.pid) ? { pid: parsed.pid, host: String(parsed.host ?? '') } : null;
  } catch {
    return null; // unreadable or half-written: treated as stale
  }
}

/**
 * Takes the data directory's lock (creating the directory if needed), or throws DataDirLockedError naming the
 * live holder. A lock left by a process that is gone (crash, SIGKILL) is taken over. The lock is released by
 * `release()` and, as a last resort, when this process exits.
 *
 * The file is created with O_EXCL, so of two processes starting together exactly one wins. Liveness is checked
 * by pid on this host; a lock written on another host (a shared volume) is never taken over.
 */
export function lockDataDir(dir: string): { release: () => void } {
  const absolute = path.resolve(dir);
  const file = path.join(absolute, LOCK_FILE);
  mkdirSync(absolute, { recursive: true });
  if (held.has(file)) throw new DataDirLockedError(absolute, process.pid);
  for (let attempt = 0; ; attempt++) {
    let fd: number;
    try {
      fd = openSync(file, 'wx', 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 2) throw err;
      const holder = readLock(file);
      if (holder && (holder.host !== hostname() || isAlive(holder.pid))) throw new DataDirLockedError(absolute, holder.pid);
      try {
        unlinkSync(file); // stale: its process is gone
      } catch (unlinkErr) {
        if ((unlinkErr as NodeJS.ErrnoException).code !== 'ENOENT') throw unlinkErr;
      }
      continue;
    }
    try {
      writeSync(fd, JSON.stringify({ pid: process.pid, host: hostname(), since: new Date().toISOString() } satisfies LockContent & { since: string }));
    } finally {
      closeSync(fd);
    }
    held.add(file);
    const onExit = () => removeIfOurs(file);
    process.once('exit', onExit);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        process.removeListener('exit', onExit);
        removeIfOurs(file);
      },
    };
  }
}

function removeIfOurs(file: string) {
  held.delete(file);
  const holder = readLock(file);
  if (holder?.pid !== process.pid) return;
  try {
    unlinkSync(file);
  } catch {
    // already gone
  }
}
