// The query functions procedures call, each taking a database or a transaction.
export * from './change-summary.ts';
export * from './feed.ts';
export * from './tenant-transaction.ts';
export * from './users.ts';
export * from './views.ts';
