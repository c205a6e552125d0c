import { getOperationAST, type DocumentNode, type OperationTypeNode } from 'graphql';
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
 * `onStream` is told when the result is an SSE stream, which may run for hours before the request
 * closes. Operations over a WebSocket carry no record; ws.ts counts those.
 */
export function useRequestRecord(onStream: (record: RequestRecord) => void): Plugin {
  return {
    onParse({ context }) {
      const record = (context as { record?: RequestRecord }).record;
      if (!record) return;
      const operationName = (context as { params?: { operationName?: string | null } }).params?.operationName ?? null;
      return ({ result }) => {
        if (!result || result instanceof Error) return;
        const operation = getOperationAST(result as DocumentNode, operationName);
        record.operationType = operation?.operation ?? null;
        record.operationName = operation?.name?.value ?? operationName;
      };
    },
    onResultProcess({ result, serverContext }) {
      const record = (serverContext as { record?: RequestRecord }).record;
      if (!record) return;
      if (isAsyncIterable(result)) {
        record.stream = true;
        onStream(record);
        return;
      }
      for (const one of Array.isArray(result) ? result : [result]) record.codes.push(...errorCodes(one.errors));
    },
  };
}
