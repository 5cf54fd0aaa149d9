// Live updates (DESIGN.md, Live updates): one hub per server process. It hears the catalogue's change notifications
// over one listening connection (db/notifications.ts), re-checks each under every subscriber's own request
// transaction (role, tenant, user; RLS) with the one definition of "changed since seen", and feeds the onChange
// streams, bounded per user, per process and per stream.
import { randomBytes } from 'node:crypto';
import { TRPCError, tracked, type TrackedEnvelope } from '@trpc/server';
import { sql } from 'drizzle-orm';
import type { Database, DbHandle } from '../db/client.ts';
import { listenForChanges, parseChangeNotification, type ChangeListener, type ListenerOptions } from '../db/notifications.ts';
import { unseenAnnouncedForUsers, type AnnouncedChange, type ChangeReason } from '../db/queries/live.ts';
import { withTenantTransaction } from '../db/queries/tenant-transaction.ts';
import type { Session } from './session.ts';

/**
 * What onChange sends (each as `tracked(id, event)`; the id is opaque, for `lastEventId`):
 * - `ready`: the first event of a stream opened without `lastEventId`: the position to resume from; nothing to refetch.
 * - `changed`: a skill the caller has viewed has unseen content (`content`) and/or new feedback by someone else
 *   (`feedback`), re-checked under the caller's own scope; within about a second of the commit.
 * - `resync`: the server cannot prove the client missed nothing (a resume on another process or after this one
 *   lost its listening connection, a resume point it no longer remembers, a burst too large to list): refetch.
 */
export type LiveEvent = { kind: 'ready' } | { kind: 'changed'; skillId: string; reasons: ChangeReason[] } | { kind: 'resync' };

export type LiveMessage = TrackedEnvelope<LiveEvent>;

export interface LiveHubOptions {
  /** The database request transactions run on (each re-check is one, as the subscriber). */
  db: Database;
  appRole: string;
  /** Open streams one user may hold on this process (LIVE_STREAMS_PER_USER, default 5); past it TOO_MANY_REQUESTS. */
  streamsPerUser?: number;
  /** Open streams this process holds at most (LIVE_MAX_STREAMS, default 10000); past it SERVICE_UNAVAILABLE. */
  maxStreams?: number;
  /**
   * Events one stream may have waiting for its client (default 100). A stream whose client falls that far behind has
   * its backlog replaced by one `resync`; if it falls that far behind again before reading anything, it is dropped.
   */
  queueLimit?: number;
  /** More changed skills than this for one user in one batch are sent as one `resync` instead (default 50). */
  burstLimit?: number;
  /** Notifications remembered for resuming streams (default 10000). */
  resumeBuffer?: number;
  /** Notifications arriving within this many ms are re-checked together (default 10). */
  batchMs?: number;
  /** Re-checks running at once (default 4): each holds a pooled connection for one short transaction. */
  checkConcurrency?: number;
  log?: { warn: (obj: object, msg: string) => void; info?: (obj: object, msg: string) => void };
}

/** What the HTTP layer lends a stream: a way to cut its connection when its client stops reading. */
export interface StreamTransport {
  drop: () => void;
}

export interface StreamOptions {
  lastEventId?: string | null;
  /** Ends the stream (the client went away). */
  signal?: AbortSignal;
  /** Epoch ms when the session expires: the stream then ends with UNAUTHORIZED. */
  expiresAt?: number;
  transport?: StreamTransport;
}

interface Buffered {
  seq: number;
  /** When this process heard it (Date.now()). */
  at: number;
  tenantId: string;
  skillId: string;
  kind: 'content' | 'feedback';
  number: number;
}

class Stream {
  readonly queue: LiveMessage[] = [];
  /** Live events arriving while a resume is being replayed wait here, then follow the replay. */
  held: LiveMessage[] | null = null;
  private wake: (() => void) | null = null;
  ended: TRPCError | 'done' | null = null;
  /** The backlog was collapsed into one resync and nothing has been read since. */
  private collapsed = false;

  constructor(
    readonly session: Session,
    private readonly limit: number,
    readonly transport: StreamTransport | undefined,
    private readonly onOverflow: (stream: Stream) => void,
  ) {}

  push(message: LiveMessage) {
    if (this.ended) return;
    if (this.held) {
      this.held.push(message);
      return;
    }
    if (this.queue.length >= this.limit) {
      if (this.collapsed) {
        this.onOverflow(this);
        return;
      }
      // The client is behind: what it has not read is replaced by one resync (it refetches anyway).
      this.queue.length = 0;
      this.queue.push(tracked(message[0], { kind: 'resync' }) as LiveMessage);
      this.collapsed = true;
    } else this.queue.push(message);
    this.notify();
  }

  end(reason: TRPCError | 'done') {
    if (this.ended) return;
    this.ended = reason;
    this.notify();
  }

  /** The replay of a resume is ready: it goes first, then what arrived meanwhile. */
  finishReplay(replay: LiveMessage[]) {
    const held = this.held ?? [];
    this.held = null;
    for (const m of replay) this.push(m);
    for (const m of held) this.push(m);
  }

  private notify() {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }

  async next(): Promise<LiveMessage | null> {
    for (;;) {
      const message = this.queue.shift();
      if (message) {
        this.collapsed = false;
        return message;
      }
      if (this.ended === 'done') return null;
      if (this.ended) throw this.ended;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }
}

/** A skill that is news to a subscriber, with the sequence number of the last notification that announced it. */
interface Found {
  skillId: string;
  reasons: ChangeReason[];
  seq: number;
}

/**
 * Users re-checked in one request transaction (each under RLS as themselves, db/queries/live.ts): one transaction per
 * user cost about 0.6 ms of server CPU (BENCHMARKS.md, Live updates); grouping shares its BEGIN, scope statement and
 * COMMIT, and sends the group's statements in one round trip.
 */
const USERS_PER_CHECK = 50;

/**
 * How far back (ms) a fresh stream (no lastEventId) looks for changes that are news to its caller: the moments
 * between a page's first fetch and its stream opening (authentication, the connection) are covered.
 */
const FRESH_STREAM_LOOKBACK_MS = 10_000;

export class LiveHub {
  private listener: ChangeListener | null = null;
  /** The current listening session; ids of another epoch cannot be resumed. null while not listening. */
  private epoch: string | null = null;
  private seq = 0;
  private buffer: Buffered[] = [];
  private pending: Buffered[] = [];
  private batchTimer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> | null = null;
  private readonly byTenant = new Map<string, Map<string, Set<Stream>>>();
  private count = 0;
  private closed = false;
  /** Re-checks (batches and resumes alike) running at once: each holds a pooled connection. */
  private readonly checkSlots: Slots;
  private readonly opts: Required<Omit<LiveHubOptions, 'log'>> & Pick<LiveHubOptions, 'log'>;
  /** Counters for metrics. */
  readonly stats = { delivered: 0, resyncs: 0, dropped: 0, checks: 0, checkFailures: 0, notifications: 0, reconnects: 0 };

  constructor(options: LiveHubOptions) {
    this.opts = {
      streamsPerUser: 5,
      maxStreams: 10_000,
      queueLimit: 100,
      burstLimit: 50,
      resumeBuffer: 10_000,
      batchMs: 10,
      checkConcurrency: 4,
      ...options,
    };
    this.checkSlots = new Slots(this.opts.checkConcurrency);
  }

  /**
   * Starts listening on the handle's database (Postgres: `listener.url`, i.e. DATABASE_DIRECT_URL). On Postgres the
   * listener's probes are sent through the request pool, so a LISTEN that cannot hear other sessions (a transaction
   * pooler) is found at once: ListenUnheardError.
   */
  async start(handle: DbHandle, listener: ListenerOptions = {}): Promise<void> {
    const notify =
      listener.notify ??
      (handle.engine === 'postgres' ? (channel: string, payload: string) => handle.db.execute(sql`select pg_catalog.pg_notify(${channel}, ${payload})`) : undefined);
    this.listener = await listenForChanges(
      handle,
      {
        onNotification: (payload) => this.onNotification(payload),
        onListening: ({ reconnected }) => this.onListening(reconnected),
        onLost: (err) => {
          this.epoch = null;
          this.opts.log?.warn({ err }, 'live updates: lost the listening connection; reconnecting');
        },
      },
      { ...listener, notify },
    );
  }

  /** Where warnings go (the server's logger, once it exists). */
  setLog(log: LiveHubOptions['log']) {
    this.opts.log = log;
  }

  /** Open streams on this process. */
  get streams(): number {
    return this.count;
  }

  /** Whether the listening connection is in place. */
  get listening(): boolean {
    return this.epoch !== null;
  }

  /** Why a stream for this session would be refused now (checked before the HTTP stream opens), or null. */
  refusal(session: Session): TRPCError | null {
    if (this.closed) return new TRPCError({ code: 'SERVICE_UNAVAILABLE', message: 'The server is shutting down: reconnect' });
    const open = this.byTenant.get(session.tenantId)?.get(session.userId)?.size ?? 0;
    if (open >= this.opts.streamsPerUser) {
      return new TRPCError({
        code: 'TOO_MANY_REQUESTS',
        message: `Too many live streams for this user (at most ${this.opts.streamsPerUser} on this server): close another tab or stream`,
      });
    }
    if (this.count >= this.opts.maxStreams) {
      return new TRPCError({ code: 'SERVICE_UNAVAILABLE', message: 'This server holds as many live streams as it can: retry later' });
    }
    return null;
  }

  /**
   * The caller's stream of live messages. Throws the refusal (TOO_MANY_REQUESTS, SERVICE_UNAVAILABLE) when it cannot
   * open. Ends when `signal` aborts (returns), at `expiresAt` (UNAUTHORIZED), when the hub closes
   * (SERVICE_UNAVAILABLE, which tRPC's client retries), or when the client falls too far behind (dropped).
   */
  async *stream(session: Session, options: StreamOptions = {}): AsyncGenerator<LiveMessage, void, unknown> {
    const refused = this.refusal(session);
    if (refused) throw refused;
    const stream = new Stream(session, this.opts.queueLimit, options.transport, (s) => this.drop(s));
    this.add(stream);
    const onAbort = () => stream.end('done');
    options.signal?.addEventListener('abort', onAbort);
    if (options.signal?.aborted) stream.end('done');
    let expiry: NodeJS.Timeout | null = null;
    if (options.expiresAt !== undefined) {
      const ms = options.expiresAt - Date.now();
      const expire = () => stream.end(new TRPCError({ code: 'UNAUTHORIZED', message: 'The session expired: sign in again' }));
      if (ms <= 0) expire();
      // setTimeout holds at most 2^31-1 ms; a longer session is re-armed when that runs out.
      else expiry = setTimeout(function arm() {
        const left = options.expiresAt! - Date.now();
        if (left <= 0) expire();
        else expiry = setTimeout(arm, Math.min(left, 2 ** 31 - 1));
      }, Math.min(ms, 2 ** 31 - 1));
    }
    try {
      this.begin(stream, options.lastEventId ?? null);
      for (;;) {
        const message = await stream.next();
        if (!message) return;
        yield message;
      }
    } finally {
      if (expiry) clearTimeout(expiry);
      options.signal?.removeEventListener('abort', onAbort);
      stream.end('done');
      this.remove(stream);
    }
  }

  /** The first messages of a stream: `ready`, a replay of what a resuming client missed, or `resync`. */
  private begin(stream: Stream, lastEventId: string | null) {
    const position = this.position();
    let missed: Buffered[];
    if (lastEventId === null) {
      stream.push(tracked(position, { kind: 'ready' }) as LiveMessage);
      // A page fetches its data and opens its stream at about the same time: a change committed in between would be
      // in neither. The changes heard in the last FRESH_STREAM_LOOKBACK_MS that are news to the caller follow `ready`
      // (news they may have fetched already only costs a refetch).
      const since = Date.now() - FRESH_STREAM_LOOKBACK_MS;
      missed = this.buffer.filter((b) => b.at >= since && b.tenantId === stream.session.tenantId);
    } else {
      const from = this.resumable(lastEventId);
      if (from === null) {
        this.stats.resyncs++;
        stream.push(tracked(position, { kind: 'resync' }) as LiveMessage);
        return;
      }
      missed = this.buffer.filter((b) => b.seq > from && b.seq <= this.seq && b.tenantId === stream.session.tenantId);
    }
    if (missed.length === 0) return;
    stream.held = [];
    const epoch = this.epoch!;
    void this.check(stream.session.tenantId, [stream.session.userId], missed).then((found) => {
      stream.finishReplay(this.messagesFor(found?.get(stream.session.userId) ?? null, epoch, this.position(), 1));
    });
  }

  /**
   * The messages for one user's streams from a re-check: a `changed` per skill (ids in `epoch`), or one `resync` (id
   * `resyncId`) when the check failed or found more than burstLimit; counted in stats for `streams` streams.
   */
  private messagesFor(changes: Found[] | null, epoch: string, resyncId: string, streams: number): LiveMessage[] {
    if (changes === null || changes.length > this.opts.burstLimit) {
      this.stats.resyncs += streams;
      return [tracked(resyncId, { kind: 'resync' }) as LiveMessage];
    }
    this.stats.delivered += changes.length * streams;
    return changes.map((c) => tracked(`${epoch}.${c.seq}`, { kind: 'changed', skillId: c.skillId, reasons: c.reasons }) as LiveMessage);
  }

  /** The sequence number after which a resuming client needs the buffered notifications, or null if it cannot be proved. */
  private resumable(lastEventId: string): number | null {
    const m = /^([0-9a-f]{16})\.(\d{1,15})$/.exec(lastEventId);
    if (!m || this.epoch === null || m[1] !== this.epoch) return null;
    const seq = Number(m[2]);
    if (seq > this.seq) return null;
    const oldest = this.buffer[0]?.seq ?? this.seq + 1;
    // Everything after `seq` must still be in the buffer.
    if (seq + 1 < oldest) return null;
    return seq;
  }

  private position(): string {
    return `${this.epoch ?? 'down'}.${this.seq}`;
  }

  private onListening(reconnected: boolean) {
    this.epoch = randomBytes(8).toString('hex');
    this.buffer = [];
    if (!reconnected) return;
    this.stats.reconnects++;
    this.opts.log?.info?.({}, 'live updates: listening again; streams resync');
    // Whatever was committed while nobody listened is unknown: every stream refetches.
    const message = tracked(this.position(), { kind: 'resync' }) as LiveMessage;
    for (const users of this.byTenant.values()) {
      for (const streams of users.values()) {
        for (const s of streams) {
          this.stats.resyncs++;
          s.push(message);
        }
      }
    }
  }

  private onNotification(payload: string) {
    const n = parseChangeNotification(payload);
    if (!n || this.closed) return;
    this.stats.notifications++;
    const entry: Buffered = { seq: ++this.seq, at: Date.now(), ...n };
    if (this.epoch !== null) {
      this.buffer.push(entry);
      if (this.buffer.length > this.opts.resumeBuffer) this.buffer.splice(0, this.buffer.length - this.opts.resumeBuffer);
    }
    if (!this.byTenant.has(n.tenantId)) return; // nobody of that tenant listens here
    this.pending.push(entry);
    this.scheduleFlush();
  }

  private scheduleFlush() {
    if (this.batchTimer || this.flushing) return;
    this.batchTimer = setTimeout(() => {
      this.batchTimer = null;
      this.flushing = this.flush().finally(() => {
        this.flushing = null;
        if (this.pending.length > 0) this.scheduleFlush();
      });
    }, this.opts.batchMs);
  }

  /** Re-checks a batch of notifications for every user of their tenants with a stream here, and delivers. */
  private async flush() {
    const batch = this.pending;
    this.pending = [];
    const epoch = this.epoch ?? 'down';
    const byTenant = new Map<string, Buffered[]>();
    for (const b of batch) {
      const list = byTenant.get(b.tenantId);
      if (list) list.push(b);
      else byTenant.set(b.tenantId, [b]);
    }
    const tasks: (() => Promise<void>)[] = [];
    for (const [tenantId, entries] of byTenant) {
      const users = this.byTenant.get(tenantId);
      if (!users) continue;
      // Each user's streams as they are now; users are re-checked in groups of USERS_PER_CHECK, one transaction each.
      const targets = [...users.entries()].map(([userId, streams]) => ({ userId, streams: [...streams] }));
      for (let i = 0; i < targets.length; i += USERS_PER_CHECK) {
        const group = targets.slice(i, i + USERS_PER_CHECK);
        tasks.push(async () => {
          const found = await this.check(tenantId, group.map((g) => g.userId), entries);
          const resyncId = `${epoch}.${entries[entries.length - 1]!.seq}`;
          for (const { userId, streams } of group) {
            const messages = this.messagesFor(found?.get(userId) ?? null, epoch, resyncId, streams.length);
            for (const s of streams) for (const m of messages) s.push(m);
          }
        });
      }
    }
    // Each task waits for one of the checkConcurrency slots (shared with resumes) before taking a connection.
    await Promise.all(tasks.map((task) => task()));
  }

  /**
   * The notified changes that are news to each of `userIds` (of `tenantId`), each with the highest sequence number
   * that announced it, in sequence order: one request transaction for all of them, each user's check under RLS as that
   * user (db/queries/live.ts). null when the check failed: those subscribers are told to resync.
   */
  private async check(
    tenantId: string,
    userIds: string[],
    entries: Buffered[],
  ): Promise<Map<string, Found[]> | null> {
    // Each skill's event carries the highest sequence number that announced it (its resume position).
    const lastSeq = new Map<string, number>();
    const announced: AnnouncedChange[] = [];
    const seen = new Set<string>();
    for (const e of entries) {
      lastSeq.set(e.skillId, Math.max(lastSeq.get(e.skillId) ?? 0, e.seq));
      const key = `${e.skillId}:${e.kind}:${e.number}`;
      if (seen.has(key)) continue;
      seen.add(key);
      announced.push({ skillId: e.skillId, contentRevision: e.kind === 'content' ? e.number : null, feedbackSeq: e.kind === 'feedback' ? e.number : null });
    }
    this.stats.checks += userIds.length;
    const release = await this.checkSlots.acquire();
    try {
      const found = await withTenantTransaction(this.opts.db, { role: this.opts.appRole, tenantId, userId: userIds[0]! }, (tx) =>
        unseenAnnouncedForUsers(tx, tenantId, userIds, announced),
      );
      const result = new Map<string, Found[]>();
      for (const [userId, changes] of found) {
        result.set(userId, changes.map((f) => ({ ...f, seq: lastSeq.get(f.skillId)! })).sort((a, b) => a.seq - b.seq));
      }
      return result;
    } catch (err) {
      this.stats.checkFailures += userIds.length;
      this.opts.log?.warn({ err }, 'live updates: re-check failed; its subscribers resync');
      return null;
    } finally {
      release();
    }
  }

  private add(stream: Stream) {
    let users = this.byTenant.get(stream.session.tenantId);
    if (!users) this.byTenant.set(stream.session.tenantId, (users = new Map()));
    let streams = users.get(stream.session.userId);
    if (!streams) users.set(stream.session.userId, (streams = new Set()));
    streams.add(stream);
    this.count++;
  }

  private remove(stream: Stream) {
    const users = this.byTenant.get(stream.session.tenantId);
    const streams = users?.get(stream.session.userId);
    if (!streams?.delete(stream)) return;
    this.count--;
    if (streams.size === 0) users!.delete(stream.session.userId);
    if (users!.size === 0) this.byTenant.delete(stream.session.tenantId);
  }

  /** A client that stopped reading: its stream ends and its connection is cut (it reconnects and resyncs). */
  private drop(stream: Stream) {
    this.stats.dropped++;
    this.opts.log?.warn({ tenantId: stream.session.tenantId }, 'live updates: dropped a stream whose client stopped reading');
    stream.end(new TRPCError({ code: 'SERVICE_UNAVAILABLE', message: 'The live stream fell too far behind: reconnect' }));
    this.remove(stream);
    stream.transport?.drop();
  }

  /**
   * Stops listening and ends every stream with SERVICE_UNAVAILABLE (tRPC's client reconnects, to another process
   * behind a load balancer); connections still open after `graceMs` (clients not reading) are cut.
   */
  async close(graceMs = 1_000): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.batchTimer) clearTimeout(this.batchTimer);
    await this.listener?.close();
    const all: Stream[] = [];
    for (const users of this.byTenant.values()) for (const streams of users.values()) all.push(...streams);
    for (const s of all) s.end(new TRPCError({ code: 'SERVICE_UNAVAILABLE', message: 'The server is shutting down: reconnect' }));
    await this.flushing;
    if (all.some((s) => s.transport)) {
      const deadline = Date.now() + graceMs;
      while (this.count > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      for (const s of all) if (this.isOpen(s)) s.transport?.drop();
    }
  }

  private isOpen(stream: Stream): boolean {
    return this.byTenant.get(stream.session.tenantId)?.get(stream.session.userId)?.has(stream) ?? false;
  }
}

/** At most `limit` holders at once; `acquire()` resolves to the release function, in arrival order. */
class Slots {
  private free: number;
  private readonly waiting: (() => void)[] = [];
  constructor(limit: number) {
    this.free = Math.max(1, limit);
  }
  async acquire(): Promise<() => void> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next) next();
      else this.free++;
    };
  }
}
