// The one data transformer, shared by server and client, so Maps and Dates cross the wire intact.
import superjson from 'superjson';

export const transformer = superjson;

export interface DataTransformer {
  serialize: (value: any) => any;
  deserialize: (value: any) => any;
}

/**
 * The client's transformer: superjson, except that an input serialised again within the same
 * synchronous run gets the first result back instead of being walked again.
 *
 * Why: tRPC's httpBatchLink with `maxItems` checks every growing group while it batches
 * (`validate(group + item)`, which builds the URL and so serialises every input of the group), then
 * builds the URL and the body: a query's input is serialised three times, and a batch of n calls
 * about n²/2 times. All of that happens in one synchronous dispatch, before any await, so remembering
 * results until the next microtask returns exactly what a fresh serialisation would: no other code can
 * run, or change the input, in between. Only object inputs are remembered.
 */
export function createClientTransformer(base: DataTransformer = superjson) {
  let memo: Map<object, unknown> | null = null;
  const input: DataTransformer = {
    serialize(value: unknown) {
      if (value === null || typeof value !== 'object') return base.serialize(value);
      if (!memo) {
        memo = new Map();
        queueMicrotask(() => {
          memo = null;
        });
      }
      if (memo.has(value)) return memo.get(value);
      const serialized: unknown = base.serialize(value);
      memo.set(value, serialized);
      return serialized;
    },
    deserialize: (value: unknown) => base.deserialize(value),
  };
  return { input, output: base };
}
