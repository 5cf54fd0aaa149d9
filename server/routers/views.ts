// Procedures about the caller's skill views: record one, look up many, the what's-new feed, a change summary.
import { TRPCError } from '@trpc/server';
import { z } from 'zod';
import { changeSummary } from '../../db/queries/change-summary.ts';
import { decodeCursor, encodeCursor, WHATS_NEW_COUNT_CAP, whatsNew, whatsNewCount } from '../../db/queries/feed.ts';
import { markSeen, recordView, viewsForSkills } from '../../db/queries/views.ts';
import { tenantProcedure } from '../trpc.ts';

// Inputs are plain schemas (no transforms or prefaults) so the tRPC panel can render a form for each.
const skillId = z.uuid();

export const recordViewInput = z.strictObject({ skillId });
export const viewsForSkillsInput = z.strictObject({ skillIds: z.array(skillId).min(1).max(500) });

export const WHATS_NEW_DEFAULTS = { limit: 10, windowDays: 30 } as const;
export const whatsNewInput = z
  .strictObject({
    limit: z.number().int().min(1).max(50).optional(),
    windowDays: z.number().int().min(1).max(90).optional(),
    cursor: z
      .string()
      .max(128)
      .refine((value) => decodeCursor(value) !== null, 'Invalid cursor: pass back a nextCursor from a previous page')
      .nullish(),
    /** Sent by tRPC's infinite-query helpers; the feed only pages forward. */
    direction: z.literal('forward').optional(),
  });
export const changeSummaryInput = z.strictObject({ skillId });
export const whatsNewCountInput = z.strictObject({
  windowDays: z.number().int().min(1).max(90).optional(),
  /** Stop counting past this many (the badge shows "999+"); default 999. */
  cap: z.number().int().min(WHATS_NEW_COUNT_CAP.min).max(WHATS_NEW_COUNT_CAP.max).optional(),
});
export const markSeenInput = z.strictObject({ skillIds: z.array(skillId).min(1).max(500) });
export const emptyInput = z.strictObject({});

const skillNotFound = () => new TRPCError({ code: 'NOT_FOUND', message: 'Skill not found' });

export const viewsProcedures = {
  /**
   * The user opened a skill: one atomic upsert; returns the view and the one before it, and `tracked: false`
   * (nothing written, both null) when the user turned tracking off.
   */
  recordView: tenantProcedure.input(recordViewInput).mutation(async ({ ctx, input }) => {
    const result = await recordView(ctx.db, ctx.viewer, input.skillId);
    if (!result) throw skillNotFound();
    return result;
  }),

  /** The caller's views of up to 500 skills in one query, as a Map keyed by skill id (viewed skills only). */
  viewsForSkills: tenantProcedure
    .input(viewsForSkillsInput)
    .query(({ ctx, input }) => viewsForSkills(ctx.db, ctx.viewer, input.skillIds)),

  /** Published skills the caller viewed that changed since, newest change first, keyset-paginated. */
  whatsNew: tenantProcedure.input(whatsNewInput).query(async ({ ctx, input }) => {
    const page = await whatsNew(ctx.db, ctx.viewer, {
      limit: input.limit ?? WHATS_NEW_DEFAULTS.limit,
      windowDays: input.windowDays ?? WHATS_NEW_DEFAULTS.windowDays,
      cursor: input.cursor ? decodeCursor(input.cursor) : null,
    });
    return { items: page.items, nextCursor: page.nextCursor ? encodeCursor(page.nextCursor) : null };
  }),

  /**
   * How many items whatsNew would list over all its pages with the same window, for a nav badge: counting stops
   * at `cap` (default 999; then `capped: true`).
   */
  whatsNewCount: tenantProcedure.input(whatsNewCountInput).query(({ ctx, input }) =>
    whatsNewCount(ctx.db, ctx.viewer, {
      windowDays: input.windowDays ?? WHATS_NEW_DEFAULTS.windowDays,
      cap: input.cap ?? WHATS_NEW_COUNT_CAP.default,
    }),
  ),

  /**
   * Clears badges without a visit: each listed skill the caller viewed has its current content and feedback
   * marked seen (viewCount, firstViewedAt, lastViewedAt unchanged). Never-viewed and unknown ids are skipped.
   * `marked`: rows that had something unseen.
   */
  markSeen: tenantProcedure.input(markSeenInput).mutation(async ({ ctx, input }) => ({
    marked: await markSeen(ctx.db, ctx.viewer, input.skillIds),
  })),

  /** markSeen for every skill the caller viewed that has something unseen (any window). */
  markAllSeen: tenantProcedure.input(emptyInput).mutation(async ({ ctx }) => ({
    marked: await markSeen(ctx.db, ctx.viewer, null),
  })),

  /** What changed on one skill since the caller's last visit. Records nothing. */
  changeSummary: tenantProcedure.input(changeSummaryInput).query(async ({ ctx, input }) => {
    const summary = await changeSummary(ctx.db, ctx.viewer, input.skillId);
    if (!summary) throw skillNotFound();
    return summary;
  }),
};
