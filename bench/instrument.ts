// Counts what a postgres.js pool sends, from the bytes it writes: round trips (socket writes) and statements.
import net from 'node:net';
import type postgres from 'postgres';

export interface DriverCounters {
  /** Statements executed: Bind messages (extended protocol) and Query messages (simple protocol). */
  statements: number;
  /**
   * Writes to the database sockets. postgres.js writes everything it has queued in one go and then waits,
   * so a write is one request/response exchange: pipelined statements share one, a statement that must be
   * described first (unprepared, with parameters) takes two.
   */
  roundTrips: number;
  /** Statements of the authenticator's user-exists check, counted apart (it is cached). */
  authStatements: number;
}

export function newCounters(): DriverCounters {
  return { statements: 0, roundTrips: 0, authStatements: 0 };
}

export function diffCounters(after: DriverCounters, before: DriverCounters): DriverCounters {
  return {
    statements: after.statements - before.statements,
    roundTrips: after.roundTrips - before.roundTrips,
    authStatements: after.authStatements - before.authStatements,
  };
}

const authCheck = /\bfrom users where tenant_id = /;

/** Reads a NUL-terminated string at `offset`. */
function cstring(buf: Buffer, offset: number): [string, number] {
  const end = buf.indexOf(0, offset);
  return [buf.toString('utf8', offset, end), end + 1];
}

/**
 * Scans the frontend messages in one write (postgres.js writes whole messages): a Parse names a statement and
 * carries its text, a Bind executes a named (or the unnamed) statement, a Query runs simple-protocol text.
 * Counting here, rather than through postgres.js's `debug` hook, adds no work to the driver (`debug` makes it
 * capture a stack trace per query).
 */
function scan(buf: Buffer, counters: DriverCounters, authStatementNames: Set<string>): void {
  let offset = 0;
  while (offset + 5 <= buf.length) {
    const type = String.fromCharCode(buf[offset]!);
    const length = buf.readInt32BE(offset + 1);
    const body = offset + 5;
    if (type === 'P') {
      const [name, next] = cstring(buf, body);
      const [text] = cstring(buf, next);
      if (authCheck.test(text)) authStatementNames.add(name);
      else authStatementNames.delete(name);
    } else if (type === 'B') {
      const [, next] = cstring(buf, body); // portal
      const [statement] = cstring(buf, next);
      counters.statements++;
      if (authStatementNames.has(statement)) counters.authStatements++;
    } else if (type === 'Q') {
      counters.statements++;
    }
    offset += 1 + length;
  }
}

type SocketOptions = { host: string[]; port: number[] };

/** postgres.js options that count into `counters`. `socket` is supported by postgres.js but not in its types. */
export function countingDriverOptions(counters: DriverCounters): postgres.Options<Record<string, postgres.PostgresType>> {
  const socket = (options: SocketOptions) =>
    new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect(options.port[0] ?? 5432, options.host[0] ?? '127.0.0.1');
      const authStatementNames = new Set<string>();
      let started = false;
      const write = s.write.bind(s) as (chunk: unknown, ...rest: unknown[]) => boolean;
      s.write = ((chunk: unknown, ...rest: unknown[]) => {
        counters.roundTrips++;
        // The startup message has no type byte; everything after it is typed frontend messages.
        if (started && Buffer.isBuffer(chunk)) scan(chunk, counters, authStatementNames);
        started = true;
        return write(chunk, ...rest);
      }) as typeof s.write;
      s.once('connect', () => {
        s.off('error', reject);
        resolve(s);
      });
      s.once('error', reject);
    });
  return { ...({ socket } as object) };
}
