import { sql } from 'drizzle-orm';
import { createDb } from '../../db/client.ts';
import { migrate } from '../../db/migrate.ts';
import { query } from '../../db/queries/rows.ts';
const h = createDb({ pgliteDir: 'memory://' });
await migrate(h);
for (const h2 of [h, createDb({ url: 'postgres://postgres@127.0.0.1:5432/postgres', poolSize: 1 })]) {
  console.log(h2.engine, await query(h2.db, sql`select current_setting('app.current_tenant_id', true) as t, current_user, session_user`));
  try {
  await h2.db.transaction(async (tx) => {
    await tx.execute(sql`select set_config('role', 'pg_read_all_data', true), set_config('app.current_tenant_id', 'x', true)`);
    console.log(await query(tx, sql`select current_user`));
    await tx.transaction(async (sp) => { await sp.execute(sql`select set_config('role', 'none', true)`); });
    console.log('after released sp', await query(tx, sql`select current_user`));
    try { await tx.transaction(async (sp) => { await sp.execute(sql`select set_config('role', 'pg_monitor', true)`); await sp.execute(sql`select 1/0`); }); } catch (e: any) { console.log('err', e.constructor.name, e.code, e.cause?.code, e.cause?.message); }
    console.log('after failed sp', await query(tx, sql`select current_user`));
    try { await tx.transaction(async (sp) => { await sp.execute(sql`select set_config('role', ${"skillviews_app; drop table skills"}, true)`); }); } catch (e: any) { console.log('err', e.cause?.code, e.cause?.message); }
    throw new Error('sentinel');
  });
  } catch (e: any) { console.log(e.message); }
  console.log(await query(h2.db, sql`select current_setting('app.current_tenant_id', true) as t, current_user`));
  await h2.close();
}
