import type { IncomingMessage } from 'node:http';
import { GraphQLError, type ExecutionResult } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import type { Caller } from '../rules/index.ts';

/**
 * What an operation's context carries for `callerKey`: the caller, and where the request came
 * from (`req` over HTTP, `remoteAddress` from a WebSocket's upgrade request).
 */
interface KeyedContext {
  caller?: Caller;
  req?: IncomingMessage;
  remoteAddress?: string;
}

/**
 * Whose budget an operation spends: a token's sender (whatever the transport, so a caller's
 * sockets and requests share one budget), else an anonymous caller's remote address; null for
 * the admin secret, which is the operator's own backend and is not limited. Anonymous callers
 * behind one proxy share its address, and so one budget.
 */
export function callerKey(context: KeyedContext): string | null {
  const caller = context.caller;
  if (!caller || caller.admin) return null;
  if (caller.identity.sender !== null) return `sender:${caller.identity.sender}`;
  return `address:${context.remoteAddress ?? context.req?.socket.remoteAddress ?? 'unknown'}`;
}

/**
 * At most `limit` queries and mutations of one caller run at a time (limits.perCallerConcurrency;
 * 0: no limit). One more is answered at once with LIMIT_EXCEEDED (HTTP 429) rather than queued:
 * a queue would hold its connection to the client and its memory, and the caller would only wait
 * longer. Without this, one caller's heavy queries take every connection of the pool and every
 * other caller waits behind them. Subscriptions are not counted: they are long-lived, have their
 * own limit per socket, and are evaluated by the live engine on its own pool.
 *
 * It wraps the execute function of every plugin before it, so a mutation's transaction (and its
 * connection) is only taken once the operation is admitted; the slot is given back however the
 * operation ends (data, errors, or a thrown error).
 */
export function useCallerConcurrency(currentLimit: () => number): Plugin {
  const running = new Map<string, number>();
  return {
    onExecute({ args, executeFn, setExecuteFn }) {
      // Read per operation: a reload may change it (limits.perCallerConcurrency).
      const limit = currentLimit();
      if (limit === 0) return;
      const key = callerKey(args.contextValue as KeyedContext);
      if (key === null) return;
      setExecuteFn(async (execArgs) => {
        const count = running.get(key) ?? 0;
        if (count >= limit) return refused(limit);
        running.set(key, count + 1);
        try {
          return await executeFn(execArgs);
        } finally {
          const left = (running.get(key) ?? 1) - 1;
          // Callers come and go: keep only those with something running.
          if (left === 0) running.delete(key);
          else running.set(key, left);
        }
      });
    },
  };
}

function refused(limit: number): ExecutionResult {
  return {
    errors: [
      new GraphQLError(`this caller already runs ${limit} operations (limits.perCallerConcurrency); wait for one to finish`, {
        extensions: { code: 'LIMIT_EXCEEDED', http: { status: 429 } },
      }),
    ],
  };
}
