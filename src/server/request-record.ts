import { getOperationAST, type DocumentNode, type GraphQLError, type OperationTypeNode } from 'graphql';
import { isAsyncIterable, type Plugin } from 'graphql-yoga';

/**
 * What one HTTP request to the gateway did, for its log line and its metrics: filled in while it
 * is answered (the operation once parsed, the error codes of what was sent), read when it closes.
 * Never the query text, variables, tokens or row data.
 */
export interface RequestRecord {
  readonly id: string;
  /** performance.now() when the request arrived. */
  readonly started: number;
  operationName: string | null;
  /** Null until a document parsed (malformed bodies, refusals before yoga). */
  operationType: OperationTypeNode | null;
  /** `extensions.code` of every error in the response, in order (`UNCODED` for an error without one). */
  readonly codes: string[];
  /** `sse` when the client asked for `text/event-stream`. */
  readonly transport: 'http' | 'sse';
  /** The response is an SSE stream (one subscription): its duration is the stream's life. */
  stream: boolean;
}

/** Characters of an operation's name kept for the log. */
const MAX_LOGGED_NAME = 128;

export interface StreamObserver {
  started(record: RequestRecord): void;
  errors(codes: readonly string[]): void;
}

export function newRecord(id: string, transport: 'http' | 'sse'): RequestRecord {
  return { id, started: performance.now(), operationName: null, operationType: null, codes: [], transport, stream: false };
}

/** The `extensions.code` of each error of a result, `UNCODED` where there is none. */
export function errorCodes(errors: readonly { extensions?: Record<string, unknown> | undefined }[] | undefined): string[] {
  return (errors ?? []).map((error) => {
    const code = error.extensions?.['code'];
    return typeof code === 'string' ? code : 'UNCODED';
  });
}

/**
 * Fills the `record` an HTTP request carries in its server context: the operation from the parsed
 * document (so requests refused in validation or authentication still have one), and the error
 * codes from the result yoga is about to send (after masking, so codes are the ones clients see).
 * An SSE stream may run for hours before its request closes: `streams` is told when one starts
 * and of the error codes of each event as it is sent (they are also kept for the request's line).
 * Operations over a WebSocket carry no record; ws.ts counts those.
 */
export function useRequestRecord(streams: StreamObserver): Plugin {
  return {
    onParse({ context }) {
      const record = (context as { record?: RequestRecord }).record;
      if (!record) return;
      const operationName = (context as { params?: { operationName?: string | null } }).params?.operationName ?? null;
      return ({ result }) => {
        if (!result || result instanceof Error) return;
        const operation = getOperationAST(result as DocumentNode, operationName);
        record.operationType = operation?.operation ?? null;
        // The document's name only (a GraphQL name), never the client's `operationName` text; cut, as names have no length limit.
        record.operationName = operation?.name?.value.slice(0, MAX_LOGGED_NAME) ?? null;
      };
    },
    onResultProcess({ result, setResult, serverContext }) {
      const record = (serverContext as { record?: RequestRecord }).record;
      if (!record) return;
      if (isAsyncIterable(result)) {
        record.stream = true;
        streams.started(record);
        setResult(
          observeStream(result, (event) => {
            const codes = errorCodes((event as { errors?: readonly GraphQLError[] }).errors);
            if (codes.length === 0) return;
            record.codes.push(...codes);
            streams.errors(codes);
          }),
        );
        return;
      }
      for (const one of Array.isArray(result) ? result : [result]) record.codes.push(...errorCodes(one.errors));
    },
  };
}

/** `stream` with `seen` told of each event (see mapStream). */
export function observeStream<T>(stream: AsyncIterable<T>, seen: (event: T) => void): AsyncIterableIterator<T> {
  return mapStream(stream, (event) => {
    seen(event);
    return event;
  });
}

/**
 * `stream` with each event replaced by `map(event)`. Not an async generator: a generator's
 * `return()` waits for its pending `next()`, and a live query's next event may never come, so a
 * client that leaves would never release its subscription; here `return()` goes straight to the
 * stream. A `map` that throws ends the stream (as graphql-js's own mapping does).
 */
export function mapStream<T, U>(stream: AsyncIterable<T>, map: (event: T) => U | Promise<U>): AsyncIterableIterator<U> {
  const inner = stream[Symbol.asyncIterator]();
  const done = (value?: unknown): IteratorResult<U> => ({ done: true, value: value as U });
  return {
    [Symbol.asyncIterator]() {
      return this;
    },
    async next() {
      const step = await inner.next();
      if (step.done) return done(step.value);
      try {
        return { done: false, value: await map(step.value) };
      } catch (err) {
        await inner.return?.().catch(() => {});
        throw err;
      }
    },
    return: async (value?: unknown) => done(inner.return ? (await inner.return(value)).value : value),
    throw: async (err?: unknown) => {
      if (!inner.throw) throw err;
      const step = await inner.throw(err);
      return step.done ? done(step.value) : { done: false, value: await map(step.value) };
    },
  };
}
