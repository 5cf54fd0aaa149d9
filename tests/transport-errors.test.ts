// Errors raised outside a procedure (HTTP transport, routing, parsing) answer in tRPC's error shape, which the
// typed client parses; no answer shows Fastify's or Node's internal text; every request gets exactly one log
// line, and no log line holds a bearer token (DESIGN.md "Deployment" → "Errors", "Live updates").
import { randomUUID } from 'node:crypto';
import net from 'node:net';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient, TRPCClientError } from '../client/index.ts';
import { engines } from './support/engines.ts';
import { createTenant, skillSpec, type TenantFixture } from './support/factory.ts';
import { startTestServer, tokenFor, type TestServer } from './support/server.ts';

/** Text that belongs to Fastify, Node or a JavaScript failure, never to an answer a client should read. */
const internalText =
  /FST_|ERR_|Cannot destructure|Cannot read properties|is not a function|Maximum call stack|RangeError|TypeError|SyntaxError|Unexpected (token|end)|JSON at position|Unknown transformation|Trying to deserialize|node:internal|\bat \S+:\d+:\d+|is not a valid url component|exceeding the max param length/i;

interface Answer {
  status: number;
  text: string;
  body: any;
}

describe.each(engines)('transport errors on $name', (engine) => {
  let server: TestServer;
  let t: TenantFixture;
  let token: string;
  const logLines: string[] = [];

  beforeAll(async () => {
    // pino writes each line to this stream; the options are main.ts's, with the stream added.
    const stream = new Writable({
      write(chunk, _encoding, done) {
        for (const line of String(chunk).split('\n')) if (line.trim()) logLines.push(line);
        done();
      },
    });
    server = await startTestServer(engine, {
      exposeErrors: false,
      logger: { level: 'info', redact: ['req.headers.authorization'], stream },
    });
    t = await createTenant(server.db, { userCount: 1, skills: [skillSpec('one')] });
    token = await tokenFor({ tenantId: t.tenantId, userId: t.userIds[0]! });
  });
  afterAll(() => server?.close());

  /**
   * Runs one request and returns its answer and the log lines it produced (requests here are sequential:
   * the lines written from its start until its line has arrived and a short quiet period has passed).
   */
  async function withLog(send: () => Promise<Answer>): Promise<Answer & { lines: any[] }> {
    const before = logLines.length;
    const answer = await send();
    for (let i = 0; i < 100 && logLines.length === before; i++) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 50));
    return { ...answer, lines: logLines.slice(before).map((line) => JSON.parse(line)) };
  }

  async function http(path: string, init: RequestInit = {}): Promise<Answer> {
    const res = await fetch(`${server.url}${path}`, init);
    const text = await res.text();
    let body: any = null;
    try {
      body = JSON.parse(text);
    } catch {
      // checked by the caller
    }
    return { status: res.status, text, body };
  }

  /** Bytes straight onto a socket, for requests fetch refuses to send (malformed URLs, broken request lines). */
  function rawHttp(request: string): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(Number(new URL(server.url).port), '127.0.0.1');
      let data = '';
      socket.on('data', (chunk) => (data += chunk));
      socket.on('error', reject);
      socket.on('end', () => {
        const [head = '', ...rest] = data.split('\r\n\r\n');
        const text = rest.join('\r\n\r\n');
        let body: any = null;
        try {
          body = JSON.parse(text);
        } catch {
          // checked by the caller
        }
        resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1]), text, body });
      });
      socket.write(request);
    });
  }

  const auth = () => ({ authorization: `Bearer ${token}` });
  const post = (path: string, body: string, headers: Record<string, string> = {}) =>
    http(path, { method: 'POST', headers: { ...auth(), 'content-type': 'application/json', ...headers }, body });
  const nested = (depth: number, inner: string) => `${'['.repeat(depth)}${inner}${']'.repeat(depth)}`;

  /** Expects tRPC's error shape, `{ error: { json: { message, code, data: { code, httpStatus } } } }`, and nothing internal. */
  function expectTrpcErrorShape(answer: Answer, status: number, code: string) {
    expect(answer.status, answer.text.slice(0, 300)).toBe(status);
    // A batch is answered with one entry per call.
    const error = (Array.isArray(answer.body) ? answer.body[0] : answer.body)?.error?.json;
    expect(error, answer.text.slice(0, 300)).toBeTruthy();
    expect(typeof error.message).toBe('string');
    expect(error.message.length).toBeGreaterThan(0);
    expect(typeof error.code).toBe('number');
    expect(error.data).toMatchObject({ code, httpStatus: status });
    expect(error.data.stack).toBeUndefined();
    expect(answer.text).not.toMatch(internalText);
  }

  /** Exactly one log line, for this request, with its status, and no token in it. */
  function expectOneLogLine(answer: Answer & { lines: any[] }, requestId?: string) {
    expect(answer.lines, JSON.stringify(answer.lines).slice(0, 500)).toHaveLength(1);
    expect(answer.lines[0].statusCode).toBe(answer.status);
    if (requestId) expect(answer.lines[0].reqId).toBe(requestId);
  }

  // [name, request, expected status, expected tRPC code]
  const cases: [string, () => Promise<Answer>, number, string, string?][] = [];
  const withId = (id: string) => ({ ...auth(), 'x-request-id': id });
  const ids = new Map<string, string>();
  const add = (name: string, send: (id: string) => Promise<Answer>, status: number, code: string) => {
    const id = `t-${randomUUID()}`;
    ids.set(name, id);
    cases.push([name, () => send(id), status, code]);
  };

  add('413: a body over 1 MiB', (id) => post('/trpc/recordView', JSON.stringify({ json: { skillId: 'x'.repeat(1024 * 1024) } }), withId(id)), 413, 'PAYLOAD_TOO_LARGE');
  add('414: a procedure path longer than maxParamLength', (id) => http(`/trpc/${'a'.repeat(6000)}`, { headers: withId(id) }), 414, 'BAD_REQUEST');
  add('415: POST with text/plain', (id) => post('/trpc/recordView', JSON.stringify({ json: { skillId: randomUUID() } }), { ...withId(id), 'content-type': 'text/plain' }), 415, 'UNSUPPORTED_MEDIA_TYPE');
  add('415: POST with application/xml', (id) => post('/trpc/recordView', '<skillId/>', { ...withId(id), 'content-type': 'application/xml' }), 415, 'UNSUPPORTED_MEDIA_TYPE');
  add('431: a URL over 16 KiB', (id) => http(`/trpc/whatsNew?input=${'a'.repeat(17 * 1024)}`, { headers: withId(id) }), 431, 'BAD_REQUEST');
  add('431: a header over 16 KiB', (id) => http('/trpc/whatsNew', { headers: { ...withId(id), 'x-padding': 'a'.repeat(17 * 1024) } }), 431, 'BAD_REQUEST');
  add('404: an unknown route', (id) => http('/no/such/route', { headers: withId(id) }), 404, 'NOT_FOUND');
  add('404: an unknown procedure', (id) => http('/trpc/noSuchProcedure', { headers: withId(id) }), 404, 'NOT_FOUND');
  add('400: a malformed URL', (id) => rawHttp(`GET /trpc/%E0%A4%A HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nX-Request-Id: ${id}\r\nConnection: close\r\n\r\n`), 400, 'BAD_REQUEST');
  add('400: a malformed request line', () => rawHttp(`NOT AN HTTP REQUEST\r\nAuthorization: Bearer ${token}\r\n\r\n`), 400, 'BAD_REQUEST');
  add('400: a deeply nested input', (id) => post('/trpc/recordView', `{"json":${nested(200_000, '"x"')}}`, withId(id)), 400, 'BAD_REQUEST');
  add('400: a deeply nested superjson meta', (id) => post('/trpc/recordView', `{"json":{"skillId":"x"},"meta":{"values":{"skillId":${nested(100_000, '"Date"')}}}}`, withId(id)), 400, 'BAD_REQUEST');
  add('400: a malformed superjson envelope (values not a tree)', (id) => post('/trpc/recordView', '{"json":{"skillId":"x"},"meta":{"values":"bad"}}', withId(id)), 400, 'BAD_REQUEST');
  add('400: a malformed superjson envelope (values on null)', (id) => post('/trpc/recordView', '{"json":null,"meta":{"values":[["Date"]]}}', withId(id)), 400, 'BAD_REQUEST');
  add('400: a malformed superjson envelope (unknown type)', (id) => post('/trpc/recordView', '{"json":{"skillId":"x"},"meta":{"values":{"skillId":[["custom","nope"]]}}}', withId(id)), 400, 'BAD_REQUEST');
  add('400: a null envelope', (id) => post('/trpc/recordView', 'null', withId(id)), 400, 'BAD_REQUEST');
  add('400: a null envelope in a batch', (id) => post('/trpc/recordView?batch=1', '{"0":null}', withId(id)), 400, 'BAD_REQUEST');
  add('400: a malformed superjson envelope (bad referentialEqualities)', (id) => post('/trpc/recordView', '{"json":{"skillId":"x"},"meta":{"referentialEqualities":"x"}}', withId(id)), 400, 'BAD_REQUEST');
  add('400: truncated JSON', (id) => post('/trpc/recordView', '{"json":{"skillId":', withId(id)), 400, 'BAD_REQUEST');
  add('400: an empty body', (id) => post('/trpc/recordView', '', withId(id)), 400, 'BAD_REQUEST');
  add('401: no token', (id) => http('/trpc/whatsNew', { headers: { 'x-request-id': id } }), 401, 'UNAUTHORIZED');
  add('405: PUT', (id) => http('/trpc/whatsNew', { method: 'PUT', headers: { ...withId(id), 'content-type': 'application/json' }, body: '{}' }), 405, 'METHOD_NOT_SUPPORTED');
  add('415: PUT without a content type', (id) => http('/trpc/whatsNew', { method: 'PUT', headers: withId(id) }), 415, 'UNSUPPORTED_MEDIA_TYPE');

  describe('every error answer has tRPC\'s shape and nothing internal, and one log line', () => {
    it.each(cases)('%s', async (name, send, status, code) => {
      const answer = await withLog(send);
      expectTrpcErrorShape(answer, status, code);
      // Rejected before routing (431, a broken request line): no request id exists yet.
      expectOneLogLine(answer, status === 431 || name.includes('request line') ? undefined : ids.get(name));
    });
  });

  it('a successful call, a batch and a token in the query string get one line each, and no line holds the token', async () => {
    const one = await withLog(() => http('/trpc/whatsNew?input=%7B%22json%22%3A%7B%7D%7D', { headers: withId('t-ok') }));
    expect(one.status, one.text).toBe(200);
    expectOneLogLine(one, 't-ok');
    expect(one.lines[0]).toMatchObject({ path: '/trpc', procedures: ['whatsNew'], outcome: 'ok' });
    const batch = await withLog(() =>
      http(`/trpc/whatsNew,changeSummary?batch=1&input=${encodeURIComponent(JSON.stringify({ 0: { json: {} }, 1: { json: { skillId: t.skills.one } } }))}`, {
        headers: withId('t-batch'),
      }),
    );
    expect(batch.status, batch.text).toBe(200);
    expectOneLogLine(batch, 't-batch');
    expect(batch.lines[0].procedures).toEqual(['whatsNew', 'changeSummary']);
    // Where SSE clients put it: connectionParams in the query string.
    const inQuery = await withLog(() =>
      http(`/trpc/whatsNew?input=%7B%22json%22%3A%7B%7D%7D&connectionParams=${encodeURIComponent(JSON.stringify({ token }))}`, { headers: withId('t-query') }),
    );
    expectOneLogLine(inQuery, 't-query');

    expect(logLines.length).toBeGreaterThanOrEqual(3);
    const signature = token.split('.')[2]!;
    for (const line of logLines) {
      expect(line).not.toContain(token);
      expect(line).not.toContain(signature);
    }
  });

  describe('the typed client parses each of them into a TRPCClientError with data.code', () => {
    async function clientError(call: () => Promise<unknown>): Promise<TRPCClientError<any>> {
      try {
        await call();
      } catch (err) {
        expect(err).toBeInstanceOf(TRPCClientError);
        return err as TRPCClientError<any>;
      }
      throw new Error('expected the call to fail');
    }
    const session = () => ({ tenantId: t.tenantId, userId: t.userIds[0]! });

    it('413', async () => {
      const err = await clientError(() => server.client(session()).recordView.mutate({ skillId: 'x'.repeat(1024 * 1024) }));
      expect(err.data).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', httpStatus: 413 });
    });

    it('414', async () => {
      const api = server.client(session()) as any;
      const err = await clientError(() => api['a'.repeat(6000)].query({}));
      expect(err.data).toMatchObject({ code: 'BAD_REQUEST', httpStatus: 414 });
    });

    it('415', async () => {
      const plainText: typeof fetch = (input, init) => {
        const headers = new Headers(init?.headers);
        headers.set('content-type', 'text/plain');
        return fetch(input, { ...init, headers });
      };
      const err = await clientError(() => server.client(session(), { fetch: plainText }).whatsNew.query({}));
      expect(err.data).toMatchObject({ code: 'UNSUPPORTED_MEDIA_TYPE', httpStatus: 415 });
    });

    it('431', async () => {
      const api = createClient({ url: server.trpcUrl, getToken: () => 'a'.repeat(17 * 1024) });
      const err = await clientError(() => api.whatsNew.query({}));
      expect(err.data).toMatchObject({ code: 'BAD_REQUEST', httpStatus: 431 });
    });

    it('404', async () => {
      const api = createClient({ url: `${server.url}/not-trpc`, getToken: () => token });
      const err = await clientError(() => api.whatsNew.query({}));
      expect(err.data).toMatchObject({ code: 'NOT_FOUND', httpStatus: 404 });
    });

    it('400 for a malformed URL', async () => {
      const api = server.client(session()) as any;
      const err = await clientError(() => api['%E0%A4%A'].query({}));
      expect(err.data).toMatchObject({ code: 'BAD_REQUEST', httpStatus: 400 });
      expect(err.message).not.toMatch(internalText);
    });
  });
});
