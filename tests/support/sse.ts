// A raw server-sent-events reader for onChange: plain fetch and a line parser, so tests control every header
// (Authorization, Last-Event-ID), see HTTP statuses and every event (connected, ping, serialized-error, data).
import { once } from 'node:events';
import http from 'node:http';

export interface SseEvent {
  /** `message` for data events, else the SSE event name (connected, ping, serialized-error, return). */
  event: string;
  id?: string;
  /** Parsed `data:` (superjson envelope for data events: `{ json: … }`). */
  data: any;
}

export interface LiveEventOf {
  id: string;
  kind: string;
  skillId?: string;
  reasons?: string[];
}

export interface OpenStream {
  status: number;
  /** The body of a refused (non-200) request, parsed as JSON. */
  body?: any;
  headers: http.IncomingHttpHeaders;
  /** Every event so far, in order. */
  events: SseEvent[];
  /** The data events so far as `{ id, kind, skillId?, reasons? }`. */
  live: () => LiveEventOf[];
  /** Waits until `predicate` holds for some event at index ≥ `from` (default 0); rejects after `timeoutMs`. */
  waitFor: (predicate: (e: SseEvent) => boolean, timeoutMs?: number, from?: number) => Promise<SseEvent>;
  /** Waits for the n-th data event matching `predicate` (live events). */
  waitForLive: (predicate: (e: LiveEventOf) => boolean, timeoutMs?: number) => Promise<LiveEventOf>;
  /** Resolves when the server ends the response. */
  ended: Promise<void>;
  /** Pauses reading from the socket (a client that stopped reading). */
  pause: () => void;
  close: () => void;
}

export interface OpenOptions {
  token?: string;
  /** Sent as tRPC connectionParams (in the URL). */
  connectionParams?: Record<string, unknown>;
  lastEventId?: string;
  /** Sent as the Last-Event-ID header instead of in the input. */
  lastEventIdHeader?: string;
  input?: Record<string, unknown>;
}

/** The URL of an onChange stream. */
export function onChangeUrl(trpcUrl: string, options: OpenOptions = {}): string {
  const input = { ...(options.input ?? {}), ...(options.lastEventId ? { lastEventId: options.lastEventId } : {}) };
  let url = `${trpcUrl}/onChange?input=${encodeURIComponent(JSON.stringify({ json: input }))}`;
  if (options.connectionParams) url += `&connectionParams=${encodeURIComponent(JSON.stringify(options.connectionParams))}`;
  return url;
}

/** Opens onChange over HTTP/1.1 (node:http, so the socket can be paused or cut) and parses what arrives. */
export async function openStream(trpcUrl: string, options: OpenOptions = {}): Promise<OpenStream> {
  const url = new URL(onChangeUrl(trpcUrl, options));
  const headers: Record<string, string> = { accept: 'text/event-stream' };
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  if (options.lastEventIdHeader) headers['last-event-id'] = options.lastEventIdHeader;
  const req = http.request(url, { method: 'GET', headers, agent: false });
  req.end();
  const [res] = (await once(req, 'response')) as [http.IncomingMessage];
  const events: SseEvent[] = [];
  const waiters = new Set<() => void>();
  const notify = () => {
    for (const w of [...waiters]) w();
  };
  let ended!: () => void;
  const endedPromise = new Promise<void>((resolve) => (ended = resolve));
  const finish = () => {
    ended();
    notify();
  };
  res.on('end', finish);
  res.on('close', finish);
  res.on('error', finish);
  req.on('error', finish);

  const status = res.statusCode ?? 0;
  let body: any;
  if (status !== 200) {
    const chunks: Buffer[] = [];
    for await (const c of res) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    try {
      body = JSON.parse(text);
    } catch {
      body = text;
    }
  } else {
    res.setEncoding('utf8');
    let buffer = '';
    res.on('data', (chunk: string) => {
      buffer += chunk;
      let cut: number;
      while ((cut = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const e: SseEvent = { event: 'message', data: undefined };
        const data: string[] = [];
        for (const line of block.split('\n')) {
          if (line.startsWith('event: ')) e.event = line.slice(7);
          else if (line.startsWith('data: ')) data.push(line.slice(6));
          else if (line.startsWith('id: ')) e.id = line.slice(4);
        }
        if (data.length === 0 && e.id === undefined && e.event === 'message') continue;
        const text = data.join('\n');
        try {
          e.data = text === '' ? '' : JSON.parse(text);
        } catch {
          e.data = text;
        }
        events.push(e);
      }
      notify();
    });
  }

  const live = () =>
    events
      .filter((e) => e.event === 'message' && e.id)
      .map((e) => ({ id: e.id!, ...(e.data?.json ?? {}) }) as LiveEventOf);

  const waitFor = (predicate: (e: SseEvent) => boolean, timeoutMs = 5000, from = 0) =>
    new Promise<SseEvent>((resolve, reject) => {
      const check = () => {
        const found = events.slice(from).find(predicate);
        if (found) {
          done();
          resolve(found);
        } else if (res.complete || res.destroyed) {
          done();
          reject(new Error(`stream ended without the event; got ${JSON.stringify(events)}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no such event within ${timeoutMs} ms; got ${JSON.stringify(events)}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      waiters.add(check);
      check();
    });

  const waitForLive = async (predicate: (e: LiveEventOf) => boolean, timeoutMs = 5000) => {
    const e = await waitFor((x) => x.event === 'message' && !!x.id && predicate({ id: x.id, ...(x.data?.json ?? {}) }), timeoutMs);
    return { id: e.id!, ...(e.data?.json ?? {}) } as LiveEventOf;
  };

  return {
    status,
    body,
    headers: res.headers,
    events,
    live,
    waitFor,
    waitForLive,
    ended: endedPromise,
    pause: () => {
      res.pause();
      res.socket?.pause();
    },
    close: () => {
      req.destroy();
      res.destroy();
    },
  };
}
