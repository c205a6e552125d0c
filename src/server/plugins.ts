import {
  createSourceEventStream,
  execute,
  GraphQLError,
  Kind,
  type ASTVisitor,
  type ExecutionArgs,
  type FieldNode,
  type OperationDefinitionNode,
  type SelectionSetNode,
  type ValidationContext,
  type ValidationRule,
} from 'graphql';
import { createGraphQLError, isAsyncIterable, type Plugin } from 'graphql-yoga';
import { EVENT_POSITION, eventPosition } from '../live/index.ts';
import type { Caller } from '../rules/index.ts';
import type { GraphQLContext } from '../schema/context.ts';
import { unauthenticated, type Authenticator } from './auth.ts';
import { mapStream } from './request-record.ts';

/**
 * Cross-cutting behaviour as envelop plugins, so HTTP, SSE and (through `yoga.getEnveloped`)
 * WebSocket operations share it: who the caller is, the depth and alias limits, and stable codes
 * on parse errors. Error masking is yoga's `maskedErrors` with `maskError` below.
 */

/** Most aliased fields one operation may ask for (fragments counted once per spread). */
export const DEFAULT_MAX_ALIASES = 100;

/**
 * Puts `caller` into the context. A transport that authenticated already (a WebSocket at
 * `connection_init`) passes `caller` itself; an HTTP request is authenticated from its headers;
 * a context with `connectionParams` from those.
 */
export function useCaller(authenticator: Authenticator): Plugin<GraphQLContext> {
  return {
    async onContextBuilding({ context, extendContext }) {
      const ctx = context as Partial<GraphQLContext> & { request?: Request; connectionParams?: Record<string, unknown> };
      if (ctx.caller) return;
      if (ctx.request) {
        // The token's expiry ends an HTTP subscription (expiry.ts).
        const session = await authenticator.sessionFromRequest(ctx.request.headers);
        extendContext({ caller: session.caller, sessionExpiresAt: session.expiresAt });
        return;
      }
      let caller: Caller;
      if (ctx.connectionParams !== undefined) caller = await authenticator.fromConnectionParams(ctx.connectionParams);
      else throw unauthenticated('no credentials reached the gateway');
      extendContext({ caller });
    },
  };
}

export interface LimitOptions {
  /** `limits.maxDepth` as it is now (a reload may change it). */
  maxDepth: () => number;
  maxAliases?: number;
}

/** Adds the depth and alias limits to validation (so they run before execution, on every transport). */
export function useQueryLimits(options: LimitOptions): Plugin {
  const aliases = aliasLimitRule(options.maxAliases ?? DEFAULT_MAX_ALIASES);
  // The depth rule is made again only when the limit changed.
  let depth = { max: options.maxDepth(), rule: depthLimitRule(options.maxDepth()) };
  return {
    onValidate({ addValidationRule }) {
      const max = options.maxDepth();
      if (max !== depth.max) depth = { max, rule: depthLimitRule(max) };
      addValidationRule(depth.rule);
      addValidationRule(aliases);
    },
  };
}

/**
 * Runs subscriptions on graphql-js's `subscribe` instead of yoga's default executor
 * (@graphql-tools/executor), on every transport. The default keeps, for each running
 * subscription, a mapping iterator, an async generator that flattens incremental delivery
 * (@defer/@stream, which rowgate does not enable) and memoization WeakMaps keyed by the
 * operation's own fragments and variables: 2.9 KB of heap per idle live query (bench:fanout),
 * more than the live engine's own state. Results are the same: each event is executed by
 * graphql-js (errors located as before), the other plugins' hooks still wrap the stream, an error
 * from the stream still reaches graphql-ws (which re-wraps it, without locations, as before) or
 * ends the SSE response, and a client that leaves still returns the iterator.
 */
export function useGraphQLSubscribe(): Plugin {
  return {
    onSubscribe({ setSubscribeFn }) {
      setSubscribeFn(subscribeKeepingPositions);
    },
  };
}

/**
 * graphql-js's `subscribe` (its source event stream, each event executed with the event as root
 * value), except that the result of a change-stream event keeps the event's position
 * (EVENT_POSITION), which execution would drop: the SSE transport sends it as the event's `id:`.
 */
async function subscribeKeepingPositions(args: ExecutionArgs): Promise<unknown> {
  const source = await createSourceEventStream(args);
  if (!isAsyncIterable(source)) return source;
  return mapStream(source, async (payload) => {
    const result = await execute({ ...args, rootValue: payload });
    const position = eventPosition(payload);
    return position === undefined ? result : Object.assign(result, { [EVENT_POSITION]: position });
  });
}

/**
 * Parse errors get `GRAPHQL_PARSE_FAILED` on every transport (yoga adds it only over HTTP),
 * variable coercion errors `BAD_USER_INPUT`; validation errors without a code already get
 * `GRAPHQL_VALIDATION_FAILED` from yoga.
 */
export function useErrorCodes(): Plugin {
  return {
    onExecute() {
      return {
        onExecuteDone({ result }) {
          codeVariableErrors(result);
        },
      };
    },
    onSubscribe() {
      return {
        // A subscription whose variables do not coerce gets a single result instead of a stream.
        onSubscribeResult({ result }) {
          codeVariableErrors(result);
        },
      };
    },
    onParse() {
      return ({ result }) => {
        if (result instanceof GraphQLError) {
          const extensions = result.extensions as Record<string, unknown>;
          extensions['code'] ??= 'GRAPHQL_PARSE_FAILED';
        }
      };
    },
  };
}

/**
 * Variables that do not coerce to their declared types (`$id: Int!` given "1 OR 1=1") fail before
 * any resolver runs; graphql-js gives them no code.
 */
function codeVariableErrors(result: unknown): void {
  if (!result || typeof result !== 'object' || !('errors' in result)) return;
  const errors = (result as { errors?: readonly GraphQLError[] }).errors;
  for (const error of errors ?? []) {
    const extensions = error.extensions as Record<string, unknown>;
    if (extensions['code'] === undefined && error.message.startsWith('Variable "$')) extensions['code'] = 'BAD_USER_INPUT';
  }
}

function limitExceeded(message: string, node: OperationDefinitionNode): GraphQLError {
  return new GraphQLError(message, { nodes: [node], extensions: { code: 'LIMIT_EXCEEDED' } });
}

const INTROSPECTION_ROOTS = new Set(['__schema', '__type']);

/**
 * Rejects operations nested deeper than `maxDepth` fields: `{ a { b { c } } }` has depth 3.
 * Fragments and inline fragments add no level of their own but their fields count where they are
 * spread, so depth cannot hide in them. Introspection (`__schema`, `__type` at the root) is left
 * to graphql-js's own MaxIntrospectionDepthRule (part of `specifiedRules`), because the standard
 * introspection query is deeper than 10 (its `ofType` chain alone is 8 levels) but bounded.
 */
export function depthLimitRule(maxDepth: number): ValidationRule {
  return (context: ValidationContext): ASTVisitor => {
    const fragmentDepths = new Map<string, number>();

    const fragmentDepth = (name: string, visiting: Set<string>): number => {
      const known = fragmentDepths.get(name);
      if (known !== undefined) return known;
      const fragment = context.getFragment(name);
      // Unknown fragments and cycles are reported by graphql-js's own rules.
      if (!fragment || visiting.has(name)) return 0;
      visiting.add(name);
      const depth = selectionDepth(fragment.selectionSet, visiting);
      visiting.delete(name);
      fragmentDepths.set(name, depth);
      return depth;
    };

    const selectionDepth = (set: SelectionSetNode, visiting: Set<string>): number => {
      let max = 0;
      for (const selection of set.selections) {
        let depth: number;
        if (selection.kind === Kind.FIELD) depth = 1 + (selection.selectionSet ? selectionDepth(selection.selectionSet, visiting) : 0);
        else if (selection.kind === Kind.INLINE_FRAGMENT) depth = selectionDepth(selection.selectionSet, visiting);
        else depth = fragmentDepth(selection.name.value, visiting);
        if (depth > max) max = depth;
      }
      return max;
    };

    return {
      OperationDefinition(operation) {
        let max = 0;
        for (const field of rootFields(context, operation.selectionSet, new Set())) {
          if (INTROSPECTION_ROOTS.has(field.name.value)) continue;
          const depth = 1 + (field.selectionSet ? selectionDepth(field.selectionSet, new Set()) : 0);
          if (depth > max) max = depth;
        }
        if (max > maxDepth) {
          context.reportError(limitExceeded(`the query is nested ${max} levels deep; the limit is ${maxDepth} (limits.maxDepth)`, operation));
        }
        return false;
      },
    };
  };
}

/** The fields at the root of an operation, looking through fragments spread at the root. */
function* rootFields(context: ValidationContext, set: SelectionSetNode, visiting: Set<string>): Generator<FieldNode> {
  for (const selection of set.selections) {
    if (selection.kind === Kind.FIELD) yield selection;
    else if (selection.kind === Kind.INLINE_FRAGMENT) yield* rootFields(context, selection.selectionSet, visiting);
    else {
      const name = selection.name.value;
      const fragment = context.getFragment(name);
      if (!fragment || visiting.has(name)) continue;
      visiting.add(name);
      yield* rootFields(context, fragment.selectionSet, visiting);
      visiting.delete(name);
    }
  }
}

/**
 * Rejects operations with more than `maxAliases` aliased fields, counting a fragment's aliases
 * each time it is spread: aliases are the cheap way to ask for the same expensive field many times.
 */
export function aliasLimitRule(maxAliases: number): ValidationRule {
  return (context: ValidationContext): ASTVisitor => {
    const fragmentCounts = new Map<string, number>();
    const count = (set: SelectionSetNode, visiting: Set<string>): number => {
      let n = 0;
      for (const selection of set.selections) {
        if (selection.kind === Kind.FIELD) {
          if (selection.alias) n += 1;
          if (selection.selectionSet) n += count(selection.selectionSet, visiting);
        } else if (selection.kind === Kind.INLINE_FRAGMENT) {
          n += count(selection.selectionSet, visiting);
        } else {
          const name = selection.name.value;
          let known = fragmentCounts.get(name);
          if (known === undefined) {
            const fragment = context.getFragment(name);
            if (!fragment || visiting.has(name)) continue;
            visiting.add(name);
            known = count(fragment.selectionSet, visiting);
            visiting.delete(name);
            fragmentCounts.set(name, known);
          }
          n += known;
        }
        // Stop early: counts grow multiplicatively through fragments.
        if (n > maxAliases) return n;
      }
      return n;
    };
    return {
      OperationDefinition(operation) {
        const n = count(operation.selectionSet, new Set());
        if (n > maxAliases) {
          context.reportError(limitExceeded(`the query uses more than ${maxAliases} aliases`, operation));
        }
        return false;
      },
    };
  };
}

/** Where masked internal errors are reported (the client sees only a generic message). */
export type InternalErrorLogger = (error: unknown) => void;

export const INTERNAL_ERROR_MESSAGE = 'Internal server error';

/**
 * yoga's `maskError`: a GraphQLError that carries its own `extensions.code` or that the code
 * threw on purpose keeps its message and code; anything else (a raw Error, a PostgreSQL error, a
 * GraphQLError wrapping one) becomes `INTERNAL_SERVER_ERROR` with a generic message, whatever
 * NODE_ENV says, and is handed to `log`.
 */
export function createMaskError(log: InternalErrorLogger): (error: unknown, message: string) => Error {
  return (error) => {
    if (isGraphQLError(error) && error.message === INTERNAL_ERROR_MESSAGE && error.extensions['code'] === 'INTERNAL_SERVER_ERROR') return error;
    if (isGraphQLError(error)) {
      const original = error.originalError;
      const code = (error.extensions as Record<string, unknown> | undefined)?.['code'];
      const deliberate = original === undefined || original === null || isGraphQLError(original);
      if (deliberate || (typeof code === 'string' && !hasOwnExtensions(original))) {
        if (code !== 'INTERNAL_SERVER_ERROR') return withoutOriginalError(error);
      }
    }
    log(isGraphQLError(error) && error.originalError ? error.originalError : error);
    return createGraphQLError(INTERNAL_ERROR_MESSAGE, {
      ...(isGraphQLError(error) && error.nodes ? { nodes: error.nodes } : {}),
      ...(isGraphQLError(error) && error.path ? { path: error.path } : {}),
      extensions: { code: 'INTERNAL_SERVER_ERROR' },
    });
  };
}

/** yoga puts the parser's own error (which quotes the body) into `extensions.originalError`; clients do not need it. */
function withoutOriginalError(error: GraphQLError): GraphQLError {
  const extensions = error.extensions as Record<string, unknown>;
  // In place: yoga reads other extensions (the HTTP status) from this same object.
  if ('originalError' in extensions) delete extensions['originalError'];
  return error;
}

function isGraphQLError(value: unknown): value is GraphQLError {
  return value instanceof GraphQLError;
}

/** A raw error object with an `extensions` field passes it on to the GraphQLError wrapping it; such codes are not trusted. */
function hasOwnExtensions(error: unknown): boolean {
  return typeof error === 'object' && error !== null && 'extensions' in error;
}
