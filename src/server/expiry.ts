import { Repeater } from '@repeaterjs/repeater';
import type { ExecutionResult } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import { unauthenticated } from './auth.ts';

/**
 * An HTTP subscription (SSE) ends when the token that opened it expires, as a WebSocket is closed
 * with 4403 then: its last event is an `UNAUTHENTICATED` error, and the live engine lets the
 * subscription go. Without this, a stream opened with a token would keep pushing rows long after
 * the token stopped being valid (revocation by expiry would not reach it).
 */
export function useSessionExpiry(): Plugin<{ sessionExpiresAt?: number | null }> {
  return {
    onSubscribe({ args }) {
      const at = (args.contextValue as { sessionExpiresAt?: number | null }).sessionExpiresAt;
      if (typeof at !== 'number') return;
      return {
        onSubscribeResult({ result, setResult }) {
          if (result && Symbol.asyncIterator in result) setResult(endAt(result as AsyncIterable<ExecutionResult>, at));
        },
      };
    },
  };
}

/** Longest delay setTimeout takes (about 24.8 days); longer ones are waited for in steps. */
const MAX_DELAY = 2 ** 31 - 1;

function endAt(source: AsyncIterable<ExecutionResult>, at: number): AsyncIterableIterator<ExecutionResult> {
  return new Repeater<ExecutionResult>(async (push, stop) => {
    const inner = source[Symbol.asyncIterator]();
    let timer: NodeJS.Timeout | undefined;
    const expire = () => {
      const left = at - Date.now();
      if (left > 0) {
        timer = setTimeout(expire, Math.min(left, MAX_DELAY));
        return;
      }
      void push({ errors: [unauthenticated('the token expired; subscribe again with a fresh one')] }).then(() => stop());
    };
    expire();
    // Whatever ends the stream (expiry, the client leaving, the source ending) releases the source.
    void stop.then(() => {
      clearTimeout(timer);
      void inner.return?.();
    });
    const stopped = stop.then(() => ({ done: true as const, value: undefined }));
    try {
      for (;;) {
        const step = await Promise.race([inner.next(), stopped]);
        if (step.done) break;
        await push(step.value);
      }
      stop();
    } catch (err) {
      stop(err);
    }
  });
}
