// Traces: with an SDK registered, one span per procedure with its outcome code, the request transaction's span as its child.
import { randomUUID } from 'node:crypto';
import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { engines } from './support/engines.ts';
import { createTenant, skillSpec, type TenantFixture } from './support/factory.ts';
import { rawCall, startTestServer, tokenFor, type TestServer } from './support/server.ts';

// What a host does to turn tracing on (its SDK registers a provider and a context manager), with an in-memory exporter.
const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
beforeAll(() => {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  trace.setGlobalTracerProvider(provider);
});
afterAll(async () => {
  await provider.shutdown();
  trace.disable();
  context.disable();
});

const procedureSpans = () => exporter.getFinishedSpans().filter((s) => s.name.startsWith('trpc.'));
const childrenOf = (span: ReadableSpan) =>
  exporter.getFinishedSpans().filter((s) => s.parentSpanContext?.spanId === span.spanContext().spanId);

describe.each(engines)('traces on $name', (engine) => {
  let server: TestServer;
  let t: TenantFixture;
  let token: string;
  beforeAll(async () => {
    server = await startTestServer(engine);
    t = await createTenant(server.db, { skills: [skillSpec('s')] });
    token = await tokenFor({ tenantId: t.tenantId, userId: t.userIds[0]! });
  });
  afterAll(() => server.close());
  beforeEach(() => exporter.reset());

  it('records one span per call of a batch, with procedure, type, outcome code and batch size; the transaction span is its child', async () => {
    const skillId = t.skills.s!;
    const res = await fetch(`${server.trpcUrl}/recordView,recordView,recordView?batch=1`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ 0: { json: { skillId } }, 1: { json: { skillId: randomUUID() } }, 2: { json: { skillId: 'bad' } } }),
    });
    expect(res.status).toBe(207);
    // A mutation batch runs its calls concurrently; spans end when each call settles.
    const spans = procedureSpans();
    expect(spans.map((s) => [s.name, s.attributes['trpc.code']]).sort()).toEqual([
      ['trpc.recordView', 'BAD_REQUEST'],
      ['trpc.recordView', 'NOT_FOUND'],
      ['trpc.recordView', 'OK'],
    ]);
    for (const span of spans) {
      expect(span.attributes).toMatchObject({ 'trpc.procedure': 'recordView', 'trpc.type': 'mutation', 'rpc.system': 'trpc', 'trpc.batch_size': 3 });
    }
    const byCode = (code: string) => spans.find((s) => s.attributes['trpc.code'] === code)!;
    // The calls that reached the database each have one transaction span beneath them, in the same trace.
    const ok = childrenOf(byCode('OK'));
    expect(ok.map((s) => [s.name, s.attributes['db.transaction.outcome']])).toEqual([['db.transaction', 'commit']]);
    expect(ok[0]!.spanContext().traceId).toBe(byCode('OK').spanContext().traceId);
    expect(childrenOf(byCode('NOT_FOUND')).map((s) => [s.name, s.attributes['db.transaction.outcome']])).toEqual([['db.transaction', 'rollback']]);
    // A bad input never opens a transaction.
    expect(childrenOf(byCode('BAD_REQUEST'))).toEqual([]);
    expect(exporter.getFinishedSpans().filter((s) => s.name === 'db.transaction')).toHaveLength(2);
  });

  it('records UNAUTHORIZED calls, without a transaction span', async () => {
    expect((await rawCall(server.trpcUrl, 'whatsNew', { input: {} })).status).toBe(401);
    const spans = procedureSpans();
    expect(spans.map((s) => [s.name, s.attributes['trpc.type'], s.attributes['trpc.code'], s.attributes['trpc.batch_size']])).toEqual([
      ['trpc.whatsNew', 'query', 'UNAUTHORIZED', 1],
    ]);
    expect(childrenOf(spans[0]!)).toEqual([]);
  });
});
