// The catalogue's change notifications (migration 0009), heard over one listening connection per process.
import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import type { DbHandle } from './client.ts';

/** The channel migration 0009's triggers notify on. */
export const CHANGES_CHANNEL = 'skill_views_changes';

/** What a change notification names: ids only (the payload `<tenant>:<skill>:<kind>:<number>`). */
export interface ChangeNotification {
  tenantId: string;
  skillId: string;
  kind: 'content' | 'feedback';
  /** The new content revision (content) or the new feedback row's seq (feedback). */
  number: number;
}

const payloadPattern =
  /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}):([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}):(content|feedback):(\d{1,18})$/;

/** Parses a notification payload; anything else (a probe, a malformed or foreign payload) is null. */
export function parseChangeNotification(payload: string): ChangeNotification | null {
  const m = payloadPattern.exec(payload);
  if (!m) return null;
  return { tenantId: m[1]!, skillId: m[2]!, kind: m[3] as 'content' | 'feedback', number: Number(m[4]) };
}

export interface ListenerHandlers {
  /** A payload on the channel (unparsed: any role may NOTIFY anything). */
  onNotification: (payload: string) => void;
  /** LISTEN is in place; `reconnected` is true for every time after the first. */
  onListening: (info: { reconnected: boolean }) => void;
  /** The listening connection is gone: notifications are lost until the next onListening. */
  onLost: (err: unknown) => void;
}

export interface ListenerOptions {
  /** Postgres: the URL to listen on, a session (DATABASE_DIRECT_URL; a transaction pooler cannot carry LISTEN). */
  url?: string;
  /** First and longest wait between reconnection attempts, in ms (default 250 and 10000; doubled each time, with jitter). */
  backoffMs?: { initial: number; max: number };
  /**
   * Every this many ms (default 30000) the listener sends itself a notification and expects to hear it within
   * probeTimeoutMs (default 5000) of the send returning: a connection that died silently (a network partition) is
   * replaced. 0 turns the periodic probe off (the one at each (re)connection stays).
   */
  probeIntervalMs?: number;
  probeTimeoutMs?: number;
  /**
   * Sends the probe from another session (the request pool). A notification sent from the listening session itself
   * can come back inside its own transaction even through a transaction pooler, which drops the ones other sessions
   * send while the listener sits idle: only a probe from elsewhere proves LISTEN works. Default: the listener's own
   * connection.
   */
  notify?: (channel: string, payload: string) => Promise<unknown>;
}

/**
 * The listening connection did not hear a notification sent from another session: LISTEN does not work over that URL
 * (typically a transaction pooler such as PgBouncer). Start-up stops with this message.
 */
export class ListenUnheardError extends Error {
  override name = 'ListenUnheardError';
}

export interface ChangeListener {
  /** Whether LISTEN is in place right now. */
  readonly listening: boolean;
  /** Stops listening and closes the connection. Idempotent. */
  close: () => Promise<void>;
}

/**
 * Listens on CHANGES_CHANNEL. PGlite: on the embedded database itself (one process; it never loses its connection).
 * Postgres: on one connection of its own (application_name `skill-views-listen`) to `url`, default the handle's URL;
 * when that connection is lost (restart, `pg_terminate_backend`, a failed probe) it reconnects with exponential
 * backoff and calls onListening({ reconnected: true }) once LISTEN is back. Resolves once the first LISTEN is in
 * place; rejects if it cannot be (a wrong URL is reported at start, not retried forever).
 */
export async function listenForChanges(handle: DbHandle, handlers: ListenerHandlers, options: ListenerOptions = {}): Promise<ChangeListener> {
  if (handle.engine === 'pglite') {
    if (!handle.pglite) throw new Error('a pglite handle needs its PGlite instance');
    const unlisten = await handle.pglite.listen(CHANGES_CHANNEL, (payload) => handlers.onNotification(payload));
    handlers.onListening({ reconnected: false });
    let closed = false;
    return {
      get listening() {
        return !closed;
      },
      close: async () => {
        if (closed) return;
        closed = true;
        if (!handle.pglite!.closed) await unlisten().catch(() => {});
      },
    };
  }
  const url = options.url ?? handle.url;
  if (!url) throw new Error('a postgres handle needs its url');
  return PostgresListener.start(url, handlers, options);
}

class PostgresListener implements ChangeListener {
  private client: postgres.Sql | null = null;
  private closed = false;
  private connected = false;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private probeTimer: NodeJS.Timeout | null = null;
  private attempt = 0;
  private readonly nonce = randomBytes(6).toString('hex');
  private probeSeq = 0;
  private awaitingProbe: { payload: string; heard: () => void } | null = null;

  private constructor(
    private readonly url: string,
    private readonly handlers: ListenerHandlers,
    private readonly backoff: { initial: number; max: number },
    private readonly probeIntervalMs: number,
    private readonly probeTimeoutMs: number,
    private readonly notify: ListenerOptions['notify'],
  ) {}

  static async start(url: string, handlers: ListenerHandlers, options: ListenerOptions): Promise<PostgresListener> {
    const listener = new PostgresListener(
      url,
      handlers,
      options.backoffMs ?? { initial: 250, max: 10_000 },
      options.probeIntervalMs ?? 30_000,
      options.probeTimeoutMs ?? 5_000,
      options.notify,
    );
    try {
      await listener.connect();
    } catch (err) {
      await listener.close();
      throw err;
    }
    listener.handlers.onListening({ reconnected: false });
    listener.scheduleProbe();
    return listener;
  }

  get listening() {
    return this.connected && !this.closed;
  }

  /**
   * Opens a fresh client, LISTENs, and proves it hears a probe; throws if any of that fails (the client is then
   * closed), ListenUnheardError when the probe went unheard.
   */
  private async connect(): Promise<void> {
    // `onnotify` is a postgres.js option its types do not declare (it is what sql.listen() itself uses).
    const options: postgres.Options<Record<string, postgres.PostgresType>> & { onnotify: (channel: string, payload: string) => void } = {
      max: 1,
      prepare: false,
      idle_timeout: 0,
      max_lifetime: null,
      fetch_types: false,
      connect_timeout: 10,
      onnotice: () => {},
      connection: { application_name: 'skill-views-listen' },
      onnotify: (channel, payload) => {
        if (channel !== CHANGES_CHANNEL || this.client !== client) return;
        if (this.awaitingProbe && payload === this.awaitingProbe.payload) {
          this.awaitingProbe.heard();
          return;
        }
        this.handlers.onNotification(payload);
      },
      onclose: () => {
        // While connecting, a failure is connect()'s to report; afterwards it is a lost connection.
        if (this.client === client && this.connected) this.lost(new Error('the listening connection closed'));
      },
    };
    const client: postgres.Sql = postgres(this.url, options);
    this.client = client;
    try {
      await client.unsafe(`LISTEN "${CHANGES_CHANNEL}"`);
      if (!(await this.heardProbe(client))) {
        throw new ListenUnheardError(
          `live updates: the LISTEN connection (application_name skill-views-listen) did not hear a notification sent from the request pool within ${this.probeTimeoutMs} ms. LISTEN needs a session of its own: behind a transaction pooler (PgBouncer) set DATABASE_DIRECT_URL to a direct PostgreSQL connection, or set LIVE_UPDATES=false.`,
        );
      }
    } catch (err) {
      if (this.client === client) this.client = null;
      void client.end({ timeout: 0 }).catch(() => {});
      throw err;
    }
    this.connected = true;
    this.attempt = 0;
  }

  /** The connection is gone (or no longer trusted): tell the hub, drop the client, try again after a backoff. */
  private lost(err: unknown) {
    if (this.closed || !this.client || !this.connected) return;
    const client = this.client;
    this.client = null;
    this.connected = false;
    this.awaitingProbe = null;
    void client.end({ timeout: 0 }).catch(() => {});
    this.handlers.onLost(err);
    this.scheduleReconnect();
  }

  private scheduleReconnect() {
    if (this.closed || this.reconnectTimer) return;
    const base = Math.min(this.backoff.max, this.backoff.initial * 2 ** this.attempt);
    const delay = base / 2 + Math.random() * (base / 2);
    this.attempt++;
    this.reconnectTimer = setTimeout(async () => {
      this.reconnectTimer = null;
      if (this.closed) return;
      try {
        await this.connect();
      } catch {
        this.scheduleReconnect();
        return;
      }
      if (this.closed) return;
      this.handlers.onListening({ reconnected: true });
    }, delay);
    this.reconnectTimer.unref();
  }

  private scheduleProbe() {
    if (this.probeIntervalMs <= 0 || this.closed) return;
    this.probeTimer = setTimeout(() => {
      this.probeTimer = null;
      this.probe();
      this.scheduleProbe();
    }, this.probeIntervalMs);
    this.probeTimer.unref();
  }

  /** The periodic probe: a connection that does not hear it is lost (then replaced). */
  private probe() {
    const client = this.client;
    if (!client || !this.connected || this.awaitingProbe) return;
    this.heardProbe(client).then(
      (heard) => {
        if (!heard && this.client === client) this.lost(new Error(`the listening connection did not hear a probe within ${this.probeTimeoutMs} ms`));
      },
      (err: unknown) => {
        if (this.client === client) this.lost(err);
      },
    );
  }

  /**
   * Sends a probe notification (through `notify`, another session, when given; else over `client`) and resolves
   * whether `client` heard it within probeTimeoutMs of the send returning (time spent waiting for a pooled connection
   * does not count). Rejects if the send fails.
   */
  private async heardProbe(client: postgres.Sql): Promise<boolean> {
    const payload = `probe:${this.nonce}:${++this.probeSeq}`;
    let heard!: () => void;
    const heardIt = new Promise<true>((resolve) => (heard = () => resolve(true)));
    this.awaitingProbe = { payload, heard };
    let timer: NodeJS.Timeout | undefined;
    try {
      if (this.notify) await this.notify(CHANGES_CHANNEL, payload);
      else await client.unsafe(`select pg_catalog.pg_notify($1, $2)`, [CHANGES_CHANNEL, payload]);
      const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), this.probeTimeoutMs)));
      return await Promise.race([heardIt, timeout]);
    } finally {
      clearTimeout(timer);
      if (this.awaitingProbe?.payload === payload) this.awaitingProbe = null;
    }
  }

  async close() {
    if (this.closed) return;
    this.closed = true;
    this.connected = false;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    if (this.probeTimer) clearTimeout(this.probeTimer);
    this.awaitingProbe = null;
    const client = this.client;
    this.client = null;
    await client?.end({ timeout: 1 }).catch(() => {});
  }
}
