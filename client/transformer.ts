// The one data transformer, shared by server and client, so Maps and Dates cross the wire intact.
import superjson from 'superjson';

export const transformer = superjson;
