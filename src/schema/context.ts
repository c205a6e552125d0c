import type { Caller } from '../rules/index.ts';

/** What every resolver receives: who is asking. The server builds it per request (and per socket). */
export interface GraphQLContext {
  caller: Caller;
  /** When the HTTP request's token stops being valid (ms since the epoch): SSE streams end then. */
  sessionExpiresAt?: number | null;
}
