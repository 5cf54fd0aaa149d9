// The application router: the public entry point for HTTP, typed clients and server-side callers.
import { createCallerFactory, router } from './trpc.ts';
import { liveProcedures } from './routers/live.ts';
import { privacyProcedures } from './routers/privacy.ts';
import { viewsProcedures } from './routers/views.ts';

export const appRouter = router({
  ...viewsProcedures,
  ...privacyProcedures,
  ...liveProcedures,
});

export type AppRouter = typeof appRouter;

/** Server-side caller: `createCaller(createContextInner({ db, session }))`. */
export const createCaller = createCallerFactory(appRouter);
