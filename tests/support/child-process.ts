// Child processes for tests: the project's scripts run as real processes, their output captured, waited on and stopped.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (scripts run with it as their working directory). */
export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface Proc {
  child: ChildProcess;
  pid: number;
  stdout: () => string;
  stderr: () => string;
  /** stdout and stderr interleaved as they arrived. */
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  hasExited: () => boolean;
  /** Resolves with the first match of `pattern` in the output; rejects if the process exits first or time runs out. */
  waitFor: (pattern: RegExp, timeoutMs: number) => Promise<RegExpMatchArray>;
  /** Resolves with the exit, or kills the process and rejects if it still runs after `timeoutMs`. */
  exitWithin: (timeoutMs: number) => Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves on exit. */
  stop: (graceMs?: number) => Promise<void>;
}

/** Starts `command args` in the repository root with exactly `env`. */
export function runProcess(command: string, args: string[], env: NodeJS.ProcessEnv): Proc {
  const child = spawn(command, args, { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    stdout += chunk.toString('utf8');
    output += chunk.toString('utf8');
  });
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8');
    output += chunk.toString('utf8');
  });
  let exitedFlag = false;
  let closed = false;
  child.once('close', () => (closed = true));
  // 'exit' can come before the last of the child's output has been read from its pipes (Node's docs: stdio may still
  // be open), so a process that printed an error and exited could look silent. Exited means exited and its output
  // read: after 'exit', wait for 'close' (all pipes ended), at most a second (a grandchild may hold a pipe open).
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      const done = () => {
        exitedFlag = true;
        resolve({ code, signal });
      };
      if (closed) return done();
      const timer = setTimeout(done, 1_000);
      child.once('close', () => {
        clearTimeout(timer);
        done();
      });
    }),
  );
  // A spawn failure (no such command) is an exit too, reported in the output.
  child.once('error', (err) => {
    output += `\n[spawn error] ${err.message}`;
  });
  const proc: Proc = {
    child,
    pid: child.pid ?? -1,
    stdout: () => stdout,
    stderr: () => stderr,
    output: () => output,
    exited,
    hasExited: () => exitedFlag,
    waitFor: async (pattern, timeoutMs) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const match = output.match(pattern);
        if (match) return match;
        if (exitedFlag) throw new Error(`process exited before printing ${pattern}:\n${output}`);
        if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${pattern}:\n${output}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
    exitWithin: async (timeoutMs) => {
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
      const result = await Promise.race([exited, timedOut]);
      clearTimeout(timer);
      if (result === 'timeout') {
        child.kill('SIGKILL');
        await exited;
        throw new Error(`process ${proc.pid} was still running after ${timeoutMs} ms:\n${output}`);
      }
      return result;
    },
    stop: async (graceMs = 10_000) => {
      if (exitedFlag) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
  return proc;
}

/** Runs `command args` to completion: its exit code and output. */
export async function runToEnd(command: string, args: string[], env: NodeJS.ProcessEnv) {
  const proc = runProcess(command, args, env);
  const { code } = await proc.exited;
  return { code, stdout: proc.stdout(), stderr: proc.stderr() };
}

/**
 * This process's environment without what would point a child at another database or secret (DATABASE_URL,
 * DATABASE_DIRECT_URL, AUTH_SECRET), plus `extra`.
 */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const { DATABASE_URL: _url, DATABASE_DIRECT_URL: _direct, AUTH_SECRET: _secret, ...rest } = process.env;
  return { ...rest, ...extra };
}
