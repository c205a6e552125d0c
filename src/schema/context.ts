import type { Caller } from '../rules/index.ts';

/** What every resolver receives: who is asking. The server builds it per request (and per socket). */
export interface GraphQLContext {
  caller: Caller;
}
