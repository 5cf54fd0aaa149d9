// The client's input serialisation: once per input per dispatch (tRPC's batch link asks up to n²/2 times), never stale.
import superjson from 'superjson';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createClientTransformer } from '../client/transformer.ts';
import { engines } from './support/engines.ts';
import { createTenant, skillSpec } from './support/factory.ts';
import { startTestServer, type TestServer } from './support/server.ts';

function countingBase() {
  const seen: unknown[] = [];
  return {
    seen,
    base: {
      serialize: (value: unknown) => {
        seen.push(value);
        return superjson.serialize(value);
      },
      deserialize: superjson.deserialize,
    },
  };
}

describe('createClientTransformer', () => {
  it('serialises an object once within one synchronous run, with the same result superjson gives', () => {
    const { seen, base } = countingBase();
    const { input } = createClientTransformer(base);
    const value = { at: new Date('2026-01-02T03:04:05Z'), ids: new Map([['a', 1]]) };
    const first = input.serialize(value);
    expect(input.serialize(value)).toBe(first);
    expect(first).toEqual(superjson.serialize(value));
    expect(seen).toHaveLength(1);
    // Primitives and undefined are not remembered (and need not be).
    expect(input.serialize(undefined)).toEqual(superjson.serialize(undefined));
    expect(input.serialize(7)).toEqual(superjson.serialize(7));
  });

  it('never returns a stale result once the run is over: a changed input is serialised again', async () => {
    const { seen, base } = countingBase();
    const { input } = createClientTransformer(base);
    const value: { skillIds: string[] } = { skillIds: ['a'] };
    expect(input.serialize(value)).toEqual({ json: { skillIds: ['a'] } });
    await Promise.resolve();
    value.skillIds.push('b');
    expect(input.serialize(value)).toEqual({ json: { skillIds: ['a', 'b'] } });
    expect(seen).toHaveLength(2);
  });
});

describe.each(engines)('typed client batching on $name', (engine) => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer(engine);
  });
  afterAll(() => server.close());
  afterEach(() => vi.restoreAllMocks());

  it('a batch of 12 queries serialises each input once and gets every answer right', async () => {
    const t = await createTenant(server.db, { skills: [skillSpec('s')] });
    const client = server.client({ tenantId: t.tenantId, userId: t.userIds[0]! });
    await client.recordView.mutate({ skillId: t.skills.s! });
    const inputs = Array.from({ length: 12 }, () => ({ skillIds: [t.skills.s!] }));
    const spy = vi.spyOn(superjson, 'serialize');
    const results = await Promise.all(inputs.map((input) => client.viewsForSkills.query(input)));
    const inputSerialisations = spy.mock.calls.filter(([value]) => inputs.includes(value as (typeof inputs)[number]));
    expect(inputSerialisations).toHaveLength(12);
    for (const views of results) expect(views.get(t.skills.s!)?.viewCount).toBe(1);
  });
});
