// Live updates behind a real PgBouncer in transaction mode: LISTEN through the pooler cannot hear other sessions, so
// start-up refuses with a message naming DATABASE_DIRECT_URL; with the direct URL, changes arrive.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createDb, type DbHandle } from '../db/client.ts';
import { ListenUnheardError } from '../db/notifications.ts';
import { LiveHub } from '../server/live.ts';
import { engines } from './support/engines.ts';
import { APP_ROLE, createTenant, editSkill, insertView, skillSpec } from './support/factory.ts';

const pooledUrl = inject('pgbouncerUrl');
const directUrl = inject('pgUrl');
const postgresEngine = engines.find((e) => e.name === 'postgres');

describe.skipIf(!pooledUrl || !postgresEngine)('live updates behind PgBouncer in transaction mode', () => {
  let pooled: DbHandle;
  let direct: DbHandle;
  beforeAll(async () => {
    pooled = createDb({ url: pooledUrl!, poolSize: 4, prepare: false });
    direct = await postgresEngine!.open();
  });
  afterAll(async () => {
    await pooled?.close();
    await direct?.close();
  });

  it('refuses to start listening through the pooler (it would hear nothing), naming DATABASE_DIRECT_URL', async () => {
    const hub = new LiveHub({ db: pooled.db, appRole: APP_ROLE });
    const started = Date.now();
    const error = await hub.start(pooled).then(
      () => null,
      (err: unknown) => err,
    );
    await hub.close();
    expect(error).toBeInstanceOf(ListenUnheardError);
    expect(String((error as Error).message)).toMatch(/DATABASE_DIRECT_URL/);
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('with DATABASE_DIRECT_URL, requests through the pooler and LISTEN on the direct connection, changes arrive', async () => {
    const hub = new LiveHub({ db: pooled.db, appRole: APP_ROLE });
    await hub.start(pooled, { url: directUrl! });
    try {
      const t = await createTenant(direct.db, { userCount: 1, skills: [skillSpec('s')] });
      await insertView(direct.db, t, { userId: t.userIds[0]!, skillId: t.skills.s! });
      const stream = hub.stream({ tenantId: t.tenantId, userId: t.userIds[0]! });
      expect((await stream.next()).value?.[1]).toEqual({ kind: 'ready' });
      await editSkill(direct.db, t, t.skills.s!, { description: 'edited' });
      const next = await Promise.race([stream.next(), new Promise((r) => setTimeout(r, 3_000, 'timeout'))]);
      expect((next as IteratorResult<[string, unknown]>).value?.[1]).toEqual({ kind: 'changed', skillId: t.skills.s, reasons: ['content'] });
      await stream.return(undefined);
    } finally {
      await hub.close();
    }
  });
});
