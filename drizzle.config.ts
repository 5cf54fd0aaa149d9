// drizzle-kit configuration: generates SQL migrations from db/schema.
import { defineConfig } from 'drizzle-kit';

export default defineConfig({
  dialect: 'postgresql',
  schema: './db/schema/index.ts',
  out: './db/migrations',
  casing: 'snake_case',
  // Roles are created by our custom migration, not by drizzle-kit.
  entities: { roles: false },
});
