// drizzle-kit configuration: generates SQL migrations from db/schema.
import { defineConfig } from 'drizzle-kit';

export default defineConfig({
  dialect: 'postgresql',
  schema: './db/schema/index.ts',
  out: './db/migrations',
  casing: 'snake_case',
  // Roles are created by our custom migration, not by drizzle-kit.
  entities: { roles: false },
  // The module's own journal (db/migrate.ts), so `drizzle-kit migrate` and a host app's drizzle journal agree with it.
  migrations: { table: 'skill_views_migrations', schema: 'drizzle' },
});
