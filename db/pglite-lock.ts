// One writer per embedded data directory: a lock file in the directory holding the owner's pid, checked for liveness.
import { closeSync, fstatSync, mkdirSync, openSync, readFileSync, realpathSync, statSync, unlinkSync, utimesSync, writeSync } from 'node:fs';
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
    readonly host?: string,
  ) {
    super(
      `The embedded database in ${dir} is in use by process ${pid}` +
        (pid === process.pid && !host ? ' (this process)' : '') +
        (host ? ` on host ${host} (its lock was refreshed in the last ${STALE_AFTER_MS / 1000} s)` : '') +
        `. PGlite allows one process per data directory: stop that process, or use another PGLITE_DIR.`,
    );
  }
}

/** The holder refreshes its lock file's mtime this often (ms), so a lock from another host can be judged. */
const HEARTBEAT_MS = 10_000;
/**
 * A lock written on another host (a container recreated under a new hostname, a shared volume) whose pid cannot
 * be checked from here counts as live while refreshed within this long (ms), and as stale after.
 */
const STALE_AFTER_MS = 45_000;

interface LockContent {
  pid: number;
  host: string;
}

/** What a lock file held when read: its text and inode identify it; `content` is null when it is empty or not ours. */
interface LockFileState {
  raw: string;
  ino: number;
  mtimeMs: number;
  content: LockContent | null;
}

// Shared by every copy of this module in the process (module isolation in test runners, CJS and ESM builds).
const held: Set<string> = ((globalThis as Record<symbol, unknown>)[Symbol.for('skill-views.pglite-lock.held')] ??= new Set<string>()) as Set<string>;

/**
 * An empty or unparsable lock file younger than this may belong to a process that has created it and is about
 * to write its pid: wait for it rather than take it over. Older, its writer died in between.
 */
const UNWRITTEN_GRACE_MS = 2_000;
/** A takeover guard older than this was left by a process that died while taking over a stale lock. */
const TAKEOVER_GUARD_STALE_MS = 5_000;
/** Longest lockDataDir keeps retrying while others create, write or take over the lock. */
const GIVE_UP_MS = 10_000;

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

function parseLock(raw: string): LockContent | null {
  try {
    const parsed = JSON.parse(raw) as Partial<LockContent>;
    return typeof parsed.pid === 'number' && Number.isSafeInteger(parsed.pid) && parsed.pid > 0
      ? { pid: parsed.pid, host: String(parsed.host ?? '') }
      : null;
  } catch {
    return null;
  }
}

/** The lock file as it is now, or null when there is none. */
function readLockFile(file: string): LockFileState | null {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  try {
    const stat = fstatSync(fd);
    const raw = readFileSync(fd, 'utf8');
    return { raw, ino: stat.ino, mtimeMs: stat.mtimeMs, content: parseLock(raw) };
  } finally {
    closeSync(fd);
  }
}

function sleepSync(ms: number) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function unlinkIfPresent(file: string) {
  try {
    unlinkSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/**
 * Removes the lock file if it is still exactly the one judged stale. Done under a guard file created with
 * O_EXCL, so of several processes that found the same stale lock only one removes it: without the guard, a
 * slower one would delete the lock the faster one had just written, and both would open the database.
 */
function removeStale(file: string, judged: LockFileState) {
  const guard = `${file}.takeover`;
  let fd: number;
  try {
    fd = openSync(guard, 'wx', 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    try {
      if (Date.now() - statSync(guard).mtimeMs > TAKEOVER_GUARD_STALE_MS) unlinkIfPresent(guard);
    } catch (statErr) {
      if ((statErr as NodeJS.ErrnoException).code !== 'ENOENT') throw statErr;
    }
    sleepSync(10); // another process is taking over right now
    return;
  }
  closeSync(fd);
  try {
    const now = readLockFile(file);
    if (now && now.ino === judged.ino && now.raw === judged.raw) unlinkIfPresent(file);
  } finally {
    unlinkIfPresent(guard);
  }
}

/**
 * Takes the data directory's lock (creating the directory if needed), or throws DataDirLockedError naming the
 * live holder. A lock left by a process that is gone (crash, SIGKILL) is taken over, including one naming this
 * very pid: a container restarted after a crash often runs the server under the same pid again. The lock is
 * released by `release()` and, as a last resort, when this process exits.
 *
 * The file is created with O_EXCL, so of two processes starting together exactly one wins; a lock file not yet
 * written by its creator is waited for, not taken for stale. Liveness is checked by pid on this host. The holder
 * refreshes the file's mtime every 10 s, so a lock written on another host (a container recreated with a new
 * hostname on the same volume) is taken over once it has not been refreshed for 45 s.
 */
export function lockDataDir(dir: string): { release: () => void } {
  mkdirSync(path.resolve(dir), { recursive: true });
  // One key per directory however it is reached (relative path, symlink), so this process never holds it twice.
  const absolute = realpathSync(path.resolve(dir));
  const file = path.join(absolute, LOCK_FILE);
  if (held.has(file)) throw new DataDirLockedError(absolute, process.pid);
  const giveUpAt = Date.now() + GIVE_UP_MS;
  for (;;) {
    let fd: number;
    try {
      fd = openSync(file, 'wx', 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || Date.now() > giveUpAt) throw err;
      const current = readLockFile(file);
      if (!current) continue; // released meanwhile
      const holder = current.content;
      if (holder) {
        if (holder.host !== hostname()) {
          // Another host's pid cannot be checked from here: its heartbeat tells whether it is still there.
          if (Date.now() - current.mtimeMs < STALE_AFTER_MS) throw new DataDirLockedError(absolute, holder.pid, holder.host);
        } else if (holder.pid !== process.pid && isAlive(holder.pid)) {
          // Our own pid in a lock this process does not hold (checked above) is a previous process's.
          throw new DataDirLockedError(absolute, holder.pid);
        }
      } else if (Date.now() - current.mtimeMs < UNWRITTEN_GRACE_MS) {
        sleepSync(20); // its creator is about to write its pid
        continue;
      }
      removeStale(file, current);
      continue;
    }
    try {
      writeSync(fd, JSON.stringify({ pid: process.pid, host: hostname(), since: new Date().toISOString() } satisfies LockContent & { since: string }));
    } catch (err) {
      closeSync(fd);
      unlinkIfPresent(file); // an empty lock would hold others off for UNWRITTEN_GRACE_MS
      throw err;
    }
    closeSync(fd);
    held.add(file);
    const onExit = () => removeIfOurs(file);
    process.once('exit', onExit);
    const heartbeat = setInterval(() => {
      try {
        const now = new Date();
        utimesSync(file, now, now);
      } catch {
        // gone (released meanwhile); nothing to refresh
      }
    }, HEARTBEAT_MS);
    heartbeat.unref();
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        clearInterval(heartbeat);
        process.removeListener('exit', onExit);
        removeIfOurs(file);
      },
    };
  }
}

function removeIfOurs(file: string) {
  held.delete(file);
  try {
    if (readLockFile(file)?.content?.pid === process.pid) unlinkSync(file);
  } catch {
    // already gone, or unreadable: never fail a shutdown over it
  }
}
