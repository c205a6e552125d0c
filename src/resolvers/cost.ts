import { GraphQLError } from 'graphql';

/** Rows (JSON objects) in a root field's answer, nested ones included. */
function countRows(value: unknown, budget: number): number {
  let count = 0;
  const stack: unknown[] = [value];
  while (stack.length && count <= budget) {
    const v = stack.pop();
    if (Array.isArray(v)) stack.push(...v);
    else if (v && typeof v === 'object') {
      count++;
      stack.push(...Object.values(v));
    }
  }
  return count;
}

/**
 * Refuses an answer with more than `limits.maxTotalRows` rows. `maxRows` caps each list, but
 * nested lists multiply (1,000 accounts × 1,000 players each); counting the answer bounds what one
 * request can send, and the statement timeout bounds what it can cost the database.
 */
export function checkTotalRows(result: unknown, maxTotalRows: number): void {
  const rows = countRows(result, maxTotalRows);
  if (rows > maxTotalRows) {
    throw new GraphQLError(`the answer has more than limits.maxTotalRows (${maxTotalRows}) rows; add limits to nested lists`, {
      extensions: { code: 'LIMIT_EXCEEDED' },
    });
  }
}
