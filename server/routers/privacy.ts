// Procedures for the user's control over their own tracking data: pause recording, export, erase.
import { z } from 'zod';
import {
  decodeExportCursor,
  encodeExportCursor,
  exportMyViews,
  forgetMyViews,
  setTracking,
  trackingPreference,
} from '../../db/queries/privacy.ts';
import { tenantProcedure } from '../trpc.ts';
import { emptyInput } from './views.ts';

export const setTrackingInput = z.strictObject({ enabled: z.boolean() });
export const EXPORT_DEFAULTS = { limit: 100 } as const;
export const exportMyViewsInput = z.strictObject({
  limit: z.number().int().min(1).max(500).optional(),
  cursor: z
    .string()
    .max(64)
    .refine((value) => decodeExportCursor(value) !== null, 'Invalid cursor: pass back a nextCursor from a previous page')
    .nullish(),
  /** Sent by tRPC's infinite-query helpers; the export only pages forward. */
  direction: z.literal('forward').optional(),
});

export const privacyProcedures = {
  /** Whether the caller's views are recorded: `{ enabled }` (default true). */
  trackingPreference: tenantProcedure.input(emptyInput).query(({ ctx }) => trackingPreference(ctx.db, ctx.viewer)),

  /** Stops (`enabled: false`) or resumes the recording of the caller's views; returns the preference in force. */
  setTracking: tenantProcedure
    .input(setTrackingInput)
    .mutation(({ ctx, input }) => setTracking(ctx.db, ctx.viewer, input.enabled)),

  /** Every view row of the caller (right of access), by skill id, keyset-paged: `{ items, nextCursor }`. */
  exportMyViews: tenantProcedure.input(exportMyViewsInput).query(async ({ ctx, input }) => {
    const page = await exportMyViews(ctx.db, ctx.viewer, {
      limit: input.limit ?? EXPORT_DEFAULTS.limit,
      after: input.cursor ? decodeExportCursor(input.cursor) : null,
    });
    return { items: page.items, nextCursor: page.nextAfter ? encodeExportCursor(page.nextAfter) : null };
  }),

  /** Deletes every view row of the caller (right to erasure): `{ deleted }`. Other users' rows are untouched. */
  forgetMyViews: tenantProcedure.input(emptyInput).mutation(async ({ ctx }) => ({
    deleted: await forgetMyViews(ctx.db, ctx.viewer),
  })),
};
