import type { Plugin } from 'graphql-yoga';
import { observeStream } from './request-record.ts';

/**
 * `graphql.errorCodes: "hasura"`: `extensions.code` carries Hasura's error class, for clients
 * migrated from Hasura that branch on it (`invalid-jwt` → refresh the token), and rowgate's own
 * code moves to `extensions.rowgate_code`. Applied where results leave the gateway (HTTP, SSE,
 * WebSocket), after masking, so every error of every transport is mapped once.
 */
const HASURA_CODES: Record<string, string> = {
  UNAUTHENTICATED: 'invalid-jwt',
  FORBIDDEN: 'permission-error',
  BAD_USER_INPUT: 'validation-failed',
  GRAPHQL_VALIDATION_FAILED: 'validation-failed',
  GRAPHQL_PARSE_FAILED: 'validation-failed',
  CONSTRAINT_VIOLATION: 'constraint-violation',
  INTERNAL_SERVER_ERROR: 'unexpected',
};

/** Maps the codes of a result's errors in place; a code Hasura has no class for (LIMIT_EXCEEDED) stays. */
export function hasuraErrorCodes(result: unknown): void {
  if (!result || typeof result !== 'object') return;
  for (const error of (result as { errors?: readonly { extensions?: Record<string, unknown> }[] }).errors ?? []) {
    const extensions = error.extensions;
    const code = extensions?.['code'];
    if (!extensions || typeof code !== 'string' || !(code in HASURA_CODES) || 'rowgate_code' in extensions) continue;
    extensions['rowgate_code'] = code;
    extensions['code'] = HASURA_CODES[code];
  }
}

/** The HTTP and SSE side: single and batched results, and each event of a stream. */
export function useHasuraErrorCodes(): Plugin {
  return {
    onResultProcess({ result, setResult }) {
      if (Array.isArray(result)) result.forEach(hasuraErrorCodes);
      else if (result && Symbol.asyncIterator in result) setResult(observeStream(result, hasuraErrorCodes));
      else hasuraErrorCodes(result);
    },
  };
}
