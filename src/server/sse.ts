import type { ExecutionResult } from 'graphql';
import { isAsyncIterable, type Plugin } from 'graphql-yoga';
import { eventPosition } from '../live/index.ts';
import { formatResult } from './ws.ts';

/** How often an idle stream gets a comment line, so proxies do not close it (yoga's interval). */
const PING_MS = 12_000;

const EVENT_STREAM = 'text/event-stream';

/** yoga does not export its ResultProcessor type; this is it, as its plugins receive it. */
type ResultProcessor = Parameters<Parameters<NonNullable<Plugin['onResultProcess']>>[0]['setResultProcessor']>[0];

/**
 * Resumable SSE streams. Each `next` event of a change stream carries its position as the SSE
 * `id:`, so an `EventSource` that reconnects sends it back as `Last-Event-ID`; that header, on the
 * same subscription request, resumes the change stream after it, as if it were the `after`
 * argument (and wins over an `after` in the request: the header is where the client got to).
 * The header is caller input like `after`: the live engine validates it the same way and binds it.
 */
export function useResumableSse(): Plugin<{ lastEventId?: string }> {
  return {
    onContextBuilding({ context, extendContext }) {
      const request = (context as { request?: Request }).request;
      const lastEventId = request && acceptsEventStream(request) ? request.headers.get('last-event-id') : null;
      if (lastEventId !== null && lastEventId !== undefined) extendContext({ lastEventId });
    },
    // After yoga's own result processors (they run first): a stream asked for as SSE is sent here.
    onResultProcess({ request, result, setResultProcessor }) {
      if (isAsyncIterable(result) && acceptsEventStream(request)) setResultProcessor(processEventStream, EVENT_STREAM);
    },
  };
}

function acceptsEventStream(request: Request): boolean {
  return request.headers.get('accept')?.includes(EVENT_STREAM) ?? false;
}

/**
 * yoga's SSE framing (a first comment so the headers flush, a comment every 12 s, `event: next`
 * per result, `event: complete` at the end, the stream returned when the client goes away), plus
 * `id: <position>` on the events of a change stream. Results are formatted as on the WebSocket.
 */
const processEventStream: ResultProcessor = (result, fetchAPI) => {
  const events = (result as AsyncIterable<ExecutionResult>)[Symbol.asyncIterator]();
  const encoder = new fetchAPI.TextEncoder();
  let ping: ReturnType<typeof setInterval> | undefined;
  const body = new fetchAPI.ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(encoder.encode(':\n\n'));
      ping = setInterval(() => {
        // null: the stream errored or closed; 0: the client is not reading, so it needs no ping.
        if (controller.desiredSize === null) clearInterval(ping);
        else if (controller.desiredSize > 0) controller.enqueue(encoder.encode(':\n\n'));
      }, PING_MS);
    },
    async pull(controller) {
      let step: IteratorResult<ExecutionResult>;
      try {
        step = await events.next();
      } catch (err) {
        clearInterval(ping);
        throw err;
      }
      if (!step.done) {
        // Positions are digits and a colon (live/source.ts), so the id cannot break the framing.
        const position = eventPosition(step.value);
        const id = position === undefined ? '' : `id: ${position}\n`;
        controller.enqueue(encoder.encode(`${id}event: next\ndata: ${JSON.stringify(formatResult(step.value))}\n\n`));
        return;
      }
      clearInterval(ping);
      controller.enqueue(encoder.encode('event: complete\ndata:\n\n'));
      controller.close();
    },
    async cancel() {
      clearInterval(ping);
      await events.return?.();
    },
  });
  return new fetchAPI.Response(body, {
    status: 200,
    headers: { 'Content-Type': EVENT_STREAM, Connection: 'keep-alive', 'Cache-Control': 'no-cache', 'Content-Encoding': 'none' },
  });
};
