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
   * Every this many ms (default 30000) the listener notifies itself and expects to hear it back within probeTimeoutMs
   * (default 5000): a connection that died silently (a network partition, a pooler that does not carry LISTEN) is
   * replaced. 0 turns the probe off.
   */
  probeIntervalMs?: number;
  probeTimeoutMs?: number;
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
  private awaitingProbe: { payload: string; timer: NodeJS.Timeout } | null = null;

  private constructor(
    private readonly url: string,
    private readonly handlers: ListenerHandlers,
    private readonly backoff: { initial: number; max: number },
    private readonly probeIntervalMs: number,
    private readonly probeTimeoutMs: number,
  ) {}

  static async start(url: string, handlers: ListenerHandlers, options: ListenerOptions): Promise<PostgresListener> {
    const listener = new PostgresListener(
      url,
      handlers,
      options.backoffMs ?? { initial: 250, max: 10_000 },
      options.probeIntervalMs ?? 30_000,
      options.probeTimeoutMs ?? 5_000,
    );
    await listener.connect();
    listener.handlers.onListening({ reconnected: false });
    listener.scheduleProbe();
    return listener;
  }

  get listening() {
    return this.connected && !this.closed;
  }

  /** Opens a fresh client and LISTENs; throws if either fails (the client is then closed). */
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
          clearTimeout(this.awaitingProbe.timer);
          this.awaitingProbe = null;
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
    if (this.awaitingProbe) {
      clearTimeout(this.awaitingProbe.timer);
      this.awaitingProbe = null;
    }
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

  /** Notifies itself over its own connection and expects to hear it back in probeTimeoutMs, else the connection is lost. */
  private probe() {
    const client = this.client;
    if (!client || !this.connected || this.awaitingProbe) return;
    const payload = `probe:${this.nonce}:${++this.probeSeq}`;
    const timer = setTimeout(() => {
      if (this.client === client) this.lost(new Error(`the listening connection did not hear its own probe within ${this.probeTimeoutMs} ms`));
    }, this.probeTimeoutMs);
    timer.unref();
    this.awaitingProbe = { payload, timer };
    client.unsafe(`select pg_catalog.pg_notify($1, $2)`, [CHANGES_CHANNEL, payload]).catch((err: unknown) => {
      if (this.client === client) this.lost(err);
    });
  }

  async close() {
    if (this.closed) return;
    this.closed = true;
    this.connected = false;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    if (this.probeTimer) clearTimeout(this.probeTimer);
    if (this.awaitingProbe) clearTimeout(this.awaitingProbe.timer);
    const client = this.client;
    this.client = null;
    await client?.end({ timeout: 1 }).catch(() => {});
  }
}
