import { Kind, getOperationAST, type ExecutionResult } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import type { Sql } from '../db/index.ts';

/** Thrown inside the transaction to roll it back while still answering with the execution result. */
class Rollback extends Error {
  constructor(readonly result: ExecutionResult) {
    super('rollback');
  }
}

/**
 * One transaction per mutation operation (docs/rules.md): every root field of a mutation runs on the
 * same connection inside BEGIN … COMMIT, and any error in any field rolls all of them back, so
 * a failed mutation leaves the database as it was.
 */
export function useMutationTransaction(db: Sql): Plugin {
  return {
    onExecute({ args, executeFn, setExecuteFn }) {
      const operation = getOperationAST(args.document, args.operationName);
      if (operation?.operation !== 'mutation' || operation.kind !== Kind.OPERATION_DEFINITION) return;
      setExecuteFn(async (execArgs) => {
        try {
          return await db.begin(async (tx) => {
            const contextValue = { ...(execArgs.contextValue as object), tx };
            const result = (await executeFn({ ...execArgs, contextValue })) as ExecutionResult;
            if (result.errors?.length) throw new Rollback(result);
            return result;
          });
        } catch (err) {
          if (err instanceof Rollback) return err.result;
          throw err;
        }
      });
    },
  };
}
