// The live-update subscription: onChange, over server-sent events (tRPC v11 httpSubscriptionLink).
import { TRPCError } from '@trpc/server';
import { z } from 'zod';
import { liveProcedure } from '../trpc.ts';

export const onChangeInput = z.strictObject({
  /** The id of the last event the client received; tRPC's client sends it (or the Last-Event-ID header) on reconnect. */
  lastEventId: z.string().max(64).nullish(),
});

/** The input schema of each subscription, checked before its stream opens (a bad input is 400, not an event). */
export const liveInputs = { onChange: onChangeInput };

export const liveProcedures = {
  /**
   * A stream of `tracked(id, event)` for the caller (server/live.ts LiveEvent): `ready` first on a fresh stream;
   * `changed` `{ skillId, reasons: ('content' | 'feedback')[] }` when a skill they viewed changes or gets feedback
   * by someone else (re-checked under their own scope, the same "changed since seen" as the read procedures);
   * `resync` when the server cannot prove a resuming client missed nothing. Errors: UNAUTHORIZED (no or bad token;
   * the token expired mid-stream), TOO_MANY_REQUESTS (LIVE_STREAMS_PER_USER), SERVICE_UNAVAILABLE (shutting down,
   * full, or the client fell too far behind; the client reconnects), NOT_IMPLEMENTED (live updates are off).
   */
  onChange: liveProcedure.input(onChangeInput).subscription(async function* ({ ctx, input, signal }) {
    if (!ctx.live) throw new TRPCError({ code: 'NOT_IMPLEMENTED', message: 'Live updates are not enabled on this server' });
    yield* ctx.live.stream(ctx.session, {
      lastEventId: input.lastEventId ?? null,
      signal,
      expiresAt: ctx.session.expiresAt,
      transport: ctx.liveTransport,
    });
  }),
};
