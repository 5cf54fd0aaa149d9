// Messages to and from the benchmark's child processes (forked with an IPC channel).
import type { ChildProcess } from 'node:child_process';

/** Sends `message` to a child process (null: send nothing) and waits for its answer of type `type`. */
export function ask<T extends { type: string }>(child: ChildProcess, message: unknown, type: T['type']): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: T) => {
      if (m.type !== type) return;
      child.off('message', onMessage);
      child.off('exit', onExit);
      resolve(m);
    };
    const onExit = (code: number | null) => reject(new Error(`child process exited (${code}) while waiting for ${type}`));
    child.on('message', onMessage);
    child.once('exit', onExit);
    if (message !== null) child.send(message as object);
  });
}
