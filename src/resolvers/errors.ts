import { GraphQLError } from 'graphql';

/**
 * PostgreSQL errors a caller can cause, turned into GraphQL errors with a stable code. The
 * message names the constraint but never carries PostgreSQL's DETAIL, which can quote other rows.
 * Anything else is rethrown and masked by the server as an internal error.
 */
export function mapDatabaseError(err: unknown): never {
  if (err instanceof GraphQLError) throw err;
  const e = err as { code?: string; constraint_name?: string };
  if (typeof e.code === 'string' && e.code.startsWith('23')) {
    const constraint = e.constraint_name ?? null;
    throw new GraphQLError(constraint ? `the write violates constraint "${constraint}"` : 'the write violates a constraint', {
      extensions: { code: 'CONSTRAINT_VIOLATION', constraint },
    });
  }
  if (e.code === '57014') {
    throw new GraphQLError('the statement took longer than limits.statementTimeoutMs and was cancelled', { extensions: { code: 'LIMIT_EXCEEDED' } });
  }
  if (typeof e.code === 'string' && e.code.startsWith('22')) {
    // PostgreSQL's message can quote the offending value, which may come from a row the caller
    // cannot see (a cast in a rule over stored data): give the SQLSTATE only.
    throw new GraphQLError(`a value was rejected by the database (SQLSTATE ${e.code})`, { extensions: { code: 'BAD_USER_INPUT', sqlstate: e.code } });
  }
  throw err;
}
