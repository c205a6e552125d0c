/**
 * PostGraphile 5.1 / Grafast 1.1 declare `node >= 22` and call `Promise.withResolvers` (Node 22); the
 * project runs on Node 20. This polyfill (the standard semantics) is imported first by
 * bench/peers-postgraphile.ts; nothing else from Node 22 is used by them (checked: no Array.fromAsync,
 * Object.groupBy or Set methods in their dist/).
 */
const P = Promise as unknown as { withResolvers?: <T>() => { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } };
if (typeof P.withResolvers !== 'function') {
  P.withResolvers = <T>() => {
    let resolve!: (v: T) => void;
    let reject!: (e: unknown) => void;
    const promise = new Promise<T>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  };
}
export {};
