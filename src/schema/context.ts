import type { Caller } from '../rules/index.ts';

/** What every resolver receives: who is asking. The server builds it per request (and per socket). */
export interface GraphQLContext {
  caller: Caller;
  /** When the HTTP request's token stops being valid (ms since the epoch): SSE streams end then. */
  sessionExpiresAt?: number | null;
  /** An SSE request's `Last-Event-ID` header: where a change stream resumes (server/sse.ts). */
  lastEventId?: string;
}
