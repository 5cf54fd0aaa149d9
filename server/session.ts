// The authenticated caller: who they are and in which tenant.
import { z } from 'zod';

export interface Session {
  tenantId: string;
  userId: string;
  /** When the credential expires (epoch ms), if the authenticator knows: a live stream ends then (UNAUTHORIZED). */
  expiresAt?: number;
}

/** A session's ids must be uuids; anything else is treated as no session, before any SQL runs. */
export const sessionSchema = z.object({ tenantId: z.uuid(), userId: z.uuid() });

export function isValidSession(session: unknown): session is Session {
  return sessionSchema.safeParse(session).success;
}
