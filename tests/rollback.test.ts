// The request transaction: a procedure that writes and then fails leaves nothing, and nothing outlives the request.
import { TRPCError } from '@trpc/server';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import type { DbHandle, Executor } from '../db/client.ts';
import { query } from '../db/queries/rows.ts';
import { recordView } from '../db/queries/views.ts';
import { createContextInner } from '../server/context.ts';
import type { Session } from '../server/session.ts';
import { createCallerFactory, publicProcedure, router, tenantProcedure } from '../server/trpc.ts';
import { expectTrpcError } from './support/callers.ts';
import { engines } from './support/engines.ts';
import { APP_ROLE, countAll, createTenant, skillSpec, type TenantFixture } from './support/factory.ts';

interface Scope {
  tenant: string;
  user: string;
  role: string;
  login: string;
}

/** What the connection is scoped to right now: settings, current role and the session (login) role. */
async function scopeOf(db: Executor): Promise<Scope> {
  const rows = await query<Scope>(
    db,
    sql`select coalesce(current_setting('app.current_tenant_id', true), '') as tenant,
               coalesce(current_setting('app.current_user_id', true), '') as user,
               current_user::text as role, session_user::text as login`,
  );
  return rows[0]!;
}

const input = z.object({ skillId: z.uuid() });

/** Test-only procedures built from the same blocks the app router uses. */
const testRouter = router({
  recordThenReturn: tenantProcedure.input(input).mutation(({ ctx, input }) => recordView(ctx.db, ctx.viewer, input.skillId)),
  recordThenThrowTrpc: tenantProcedure.input(input).mutation(async ({ ctx, input }) => {
    const result = await recordView(ctx.db, ctx.viewer, input.skillId);
    // Inside the transaction the write happened and is visible.
    if (!result) throw new Error('precondition: the view was not written');
    throw new TRPCError({ code: 'CONFLICT', message: 'failed after writing' });
  }),
  recordThenThrowError: tenantProcedure.input(input).mutation(async ({ ctx, input }) => {
    await recordView(ctx.db, ctx.viewer, input.skillId);
    throw new Error('plain error after writing');
  }),
  scopeInside: tenantProcedure.query(({ ctx }) => scopeOf(ctx.db)),
  scopeOutside: publicProcedure.query(({ ctx }) => scopeOf(ctx.db)),
});

const createTestCaller = createCallerFactory(testRouter);

describe.each(engines)('request transaction on $name', (engine) => {
  let h: DbHandle;
  let login: string;
  beforeAll(async () => {
    // One connection, so the request after a failed one certainly reuses its connection.
    h = await engine.open({ poolSize: 1 });
    login = (await scopeOf(h.db)).login;
  });
  afterAll(() => h.close());

  const callerAs = (session: Session | null) => createTestCaller(createContextInner({ db: h.db, session }));
  const sessionOf = (t: TenantFixture): Session => ({ tenantId: t.tenantId, userId: t.userIds[0]! });
  const viewsOf = (t: TenantFixture) => countAll(h.db, 'user_skill_views', sql`where tenant_id = ${t.tenantId}::uuid`);

  it('scopes the procedure to the app role, tenant and user inside, and to nothing outside', async () => {
    const t = await createTenant(h.db);
    expect(login).not.toBe(APP_ROLE);
    expect(await callerAs(sessionOf(t)).scopeInside()).toEqual({ tenant: t.tenantId, user: t.userIds[0], role: APP_ROLE, login });
    expect(await callerAs(null).scopeOutside()).toEqual({ tenant: '', user: '', role: login, login });
  });

  it('commits a procedure that succeeds (the control for the rollback cases)', async () => {
    const t = await createTenant(h.db, { skills: [skillSpec('s')] });
    await callerAs(sessionOf(t)).recordThenReturn({ skillId: t.skills.s! });
    expect(await viewsOf(t)).toBe(1);
  });

  it('rolls back a write when the procedure then throws a TRPCError, and the client gets that error', async () => {
    const t = await createTenant(h.db, { skills: [skillSpec('s')] });
    const error = await expectTrpcError(callerAs(sessionOf(t)).recordThenThrowTrpc({ skillId: t.skills.s! }), 'CONFLICT');
    expect(error.message).toBe('failed after writing');
    expect(await viewsOf(t)).toBe(0);
  });

  it('rolls back a write when the procedure then throws a plain Error', async () => {
    const t = await createTenant(h.db, { skills: [skillSpec('s')] });
    await expectTrpcError(callerAs(sessionOf(t)).recordThenThrowError({ skillId: t.skills.s! }), 'INTERNAL_SERVER_ERROR');
    expect(await viewsOf(t)).toBe(0);
  });

  it('leaves no tenant, no user and the login role for the next request on the same connection', async () => {
    const t = await createTenant(h.db, { skills: [skillSpec('s')] });
    const caller = callerAs(sessionOf(t));
    await expectTrpcError(caller.recordThenThrowTrpc({ skillId: t.skills.s! }), 'CONFLICT');
    expect(await callerAs(null).scopeOutside()).toEqual({ tenant: '', user: '', role: login, login });
    expect(await scopeOf(h.db)).toEqual({ tenant: '', user: '', role: login, login });

    await expectTrpcError(caller.recordThenThrowError({ skillId: t.skills.s! }), 'INTERNAL_SERVER_ERROR');
    expect(await scopeOf(h.db)).toEqual({ tenant: '', user: '', role: login, login });

    // After a successful request too.
    await caller.recordThenReturn({ skillId: t.skills.s! });
    expect(await scopeOf(h.db)).toEqual({ tenant: '', user: '', role: login, login });
    expect(await viewsOf(t)).toBe(1);
  });

  it('lets the next tenant on the connection see only its own rows after a failed request', async () => {
    const a = await createTenant(h.db, { skills: [skillSpec('s')] });
    const b = await createTenant(h.db, { skills: [skillSpec('s')] });
    await callerAs(sessionOf(a)).recordThenReturn({ skillId: a.skills.s! });
    await expectTrpcError(callerAs(sessionOf(a)).recordThenThrowTrpc({ skillId: a.skills.s! }), 'CONFLICT');
    // b's request on the same connection cannot reach a's skill, even though a's request just failed there.
    const result = await callerAs(sessionOf(b)).recordThenReturn({ skillId: a.skills.s! });
    expect(result).toBeNull();
    expect(await callerAs(sessionOf(b)).scopeInside()).toMatchObject({ tenant: b.tenantId, user: b.userIds[0] });
  });
});
