import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { GraphQLSchema } from 'graphql';
import { createYoga, type YogaServerInstance } from 'graphql-yoga';
import type { Config } from '../config/index.ts';
import type { Sql } from '../db/index.ts';
import { useMutationTransaction } from '../resolvers/index.ts';
import type { GraphQLContext } from '../schema/context.ts';
import type { Authenticator } from './auth.ts';
import { useCallerConcurrency } from './concurrency.ts';
import { createMaskError, logInternalError, useCaller, useErrorCodes, useGraphQLSubscribe, useQueryLimits, type InternalErrorLogger } from './plugins.ts';
import { createWebSocketTransport, type SlowSocket } from './ws.ts';
import { hasuraErrorCodes, useHasuraErrorCodes } from './hasura-codes.ts';
import { useSessionExpiry } from './expiry.ts';

export const GRAPHQL_PATH = '/graphql';

/** What node:http hands yoga for each request; the WebSocket transport passes its own. */
export interface ServerContext {
  req: IncomingMessage;
  res: ServerResponse;
}

export type Yoga = YogaServerInstance<ServerContext, GraphQLContext>;

/** Something that must be up for `/readyz` to answer 200 (the database; later the change feed). */
export type ReadinessCheck = () => Promise<boolean>;

export interface GatewayOptions {
  config: Config;
  schema: GraphQLSchema;
  sql: Sql;
  authenticator: Authenticator;
  /** Further readiness conditions, besides `SELECT 1` on the pool. */
  readiness?: ReadinessCheck[];
  /** Where masked internal errors go; defaults to stderr. */
  logInternalError?: InternalErrorLogger;
  /** How long `close()` waits for in-flight requests before cutting connections (ms). */
  shutdownGraceMs?: number;
  /** Told about every WebSocket closed (1013) because its client read too slowly; defaults to stderr. */
  onSlowSocket?: (info: SlowSocket) => void;
  /** What GraphiQL opens with (the demo pre-fills a token in the Headers tab). */
  graphiql?: { headers?: string; defaultQuery?: string };
}

/** Open long-lived connections, for benchmarks and monitoring. */
export interface TransportStats {
  /** Open graphql-ws sockets. */
  sockets: number;
  /** Subscription operations running on those sockets. */
  subscriptions: number;
  /** Open SSE responses (one subscription each). */
  sseStreams: number;
}

export interface Gateway {
  server: Server;
  /** The yoga instance; a WebSocket transport runs operations through `yoga.getEnveloped`. */
  yoga: Yoga;
  listen(port: number, host?: string): Promise<{ url: string }>;
  /**
   * Stops accepting, closes every WebSocket with 1001 and ends every SSE stream, lets in-flight
   * requests finish (up to the grace period), disposes yoga.
   */
  close(): Promise<void>;
  stats(): TransportStats;
}

/**
 * The HTTP side of the gateway: yoga on node:http at `/graphql`, `/healthz`, `/readyz`, and
 * 404 elsewhere. The Origin allow-list and the body-size limit are enforced here, before yoga
 * sees the request; everything GraphQL-shaped (auth, limits, masking) lives in yoga plugins.
 */
export function createGateway(options: GatewayOptions): Gateway {
  const { config, schema, sql, authenticator } = options;
  const allowedOrigins = config.auth.allowedOrigins;
  const maxBodyBytes = config.limits.maxBodyBytes;
  const maskError = createMaskError(options.logInternalError);

  const yoga: Yoga = createYoga<ServerContext, GraphQLContext>({
    schema,
    graphqlEndpoint: GRAPHQL_PATH,
    landingPage: false,
    graphiql: { title: 'rowgate', ...options.graphiql },
    // GraphiQL from the installed package, with its assets inlined: yoga's default page loads them
    // from a CDN and is blank without internet. Imported on the first page view only (~9 MB).
    renderGraphiQL: async (opts) => (await import('@graphql-yoga/render-graphiql')).renderGraphiQL(opts),
    // Keep yoga's own logging quiet; internal errors are reported by maskError.
    logging: false,
    maskedErrors: { maskError },
    cors: (request) => {
      const origin = request.headers.get('origin');
      // Disallowed origins never get here (403 below); echo the allowed one.
      return origin ? { origin: [origin], credentials: true } : {};
    },
    // The transaction wraps execution, so it sees every root field of a mutation and its errors;
    // the per-caller limit wraps the transaction, so a refused mutation never takes a connection.
    plugins: [
      ...(config.graphql.errorCodes === 'hasura' ? [useHasuraErrorCodes()] : []),
      useCaller(authenticator),
      useSessionExpiry(),
      useErrorCodes(),
      useQueryLimits({ maxDepth: config.limits.maxDepth }),
      useMutationTransaction(sql),
      useCallerConcurrency(config.limits.perCallerConcurrency),
      useGraphQLSubscribe(),
    ],
  });

  const ready = readiness(sql, options.readiness ?? []);
  const graceMs = options.shutdownGraceMs ?? 10_000;

  const webSockets = createWebSocketTransport({
    yoga,
    authenticator,
    allowedOrigins,
    maxSubscriptionsPerSocket: config.limits.maxSubscriptionsPerSocket,
    maxPayloadBytes: maxBodyBytes,
    maxBufferedBytes: config.limits.maxSocketBufferBytes,
    ...(options.onSlowSocket ? { onSlowSocket: options.onSlowSocket } : {}),
    maskError,
    ...(config.graphql.errorCodes === 'hasura' ? { mapErrors: hasuraErrorCodes } : {}),
    logInternalError: options.logInternalError ?? logInternalError,
    path: GRAPHQL_PATH,
  });
  /** SSE responses in flight: they never finish on their own, so close() ends them. */
  const streams = new Set<ServerResponse>();

  /** Requests being answered: those still to send headers when close() starts are told to close their connection. */
  const inFlight = new Set<ServerResponse>();
  let closing: Promise<void> | null = null;

  const server = createServer((req, res) => {
    inFlight.add(res);
    res.once('close', () => inFlight.delete(res));
    // A request that arrives on a kept-alive connection during shutdown is answered, then the connection closes.
    if (closing) res.setHeader('connection', 'close');
    void route(req, res).catch((err: unknown) => {
      (options.logInternalError ?? console.error)(err);
      if (!res.headersSent) sendJson(res, 500, graphqlError('Internal server error', 'INTERNAL_SERVER_ERROR'));
      else res.destroy();
    });
  });
  server.on('upgrade', webSockets.handleUpgrade);

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (path === '/healthz') return sendJson(res, 200, { status: 'ok' });
    if (path === '/readyz') {
      const ok = await ready();
      return sendJson(res, ok ? 200 : 503, { status: ok ? 'ready' : 'unavailable' });
    }
    if (path !== GRAPHQL_PATH) return sendJson(res, 404, { errors: [{ message: `not found: ${path} (GraphQL is at ${GRAPHQL_PATH})` }] });

    const origin = req.headers.origin;
    if (origin !== undefined && !originAllowed(allowedOrigins, origin)) {
      return sendJson(res, 403, graphqlError('this Origin is not allowed (auth.allowedOrigins)', 'FORBIDDEN'));
    }
    if (req.method === 'POST') {
      const body = await readBody(req, maxBodyBytes);
      if (body === null) {
        res.setHeader('connection', 'close');
        return sendJson(res, 413, graphqlError(`the request body is larger than ${maxBodyBytes} bytes (limits.maxBodyBytes)`, 'LIMIT_EXCEEDED'));
      }
      // yoga (through @whatwg-node/server) reads an already-consumed body from `req.body`.
      (req as IncomingMessage & { body?: Buffer }).body = body;
    }
    // One SSE request is one operation; a client that goes away aborts it and yoga returns its iterator.
    if (req.headers.accept?.includes('text/event-stream')) {
      streams.add(res);
      res.once('close', () => streams.delete(res));
    }
    await yoga.handle(req, res, { req, res });
  }

  return {
    server,
    yoga,
    listen: (port, host = '127.0.0.1') =>
      new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          const address = server.address() as AddressInfo;
          const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
          resolve({ url: `http://${shownHost}:${address.port}${GRAPHQL_PATH}` });
        });
      }),
    stats: () => ({ ...webSockets.stats(), sseStreams: streams.size }),
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        // Sockets and streams first: server.close() would wait for them for the whole grace period.
        const live = webSockets.close(graceMs);
        for (const res of streams) res.destroy();
        // In-flight requests finish, and their connections close after the response instead of
        // idling in keep-alive, which would hold server.close() open until the client drops them.
        for (const res of inFlight) if (!res.headersSent) res.setHeader('connection', 'close');
        if (!server.listening) return void live.then(() => resolve());
        const timer = setTimeout(() => server.closeAllConnections(), graceMs);
        server.close(() => {
          clearTimeout(timer);
          void live.then(() => resolve());
        });
        // Keep-alive connections with no request in flight would hold close() open.
        server.closeIdleConnections();
      }).then(() => yoga.dispose())),
  };
}

/** An `Origin` is allowed when no list is configured or when it is listed exactly. */
export function originAllowed(allowedOrigins: string[] | null, origin: string): boolean {
  return allowedOrigins === null || allowedOrigins.includes(origin);
}

/** The whole body, or null when it is larger than `limit` (announced or actual). */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer | null> {
  const announced = Number(req.headers['content-length']);
  if (Number.isFinite(announced) && announced > limit) return Promise.resolve(null);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        cleanup();
        resolve(null);
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(Buffer.concat(chunks));
    };
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
}

/**
 * `SELECT 1` on the pool within a second, and every extra check. Concurrent probes share one
 * attempt so a hanging database does not pile queries into the pool.
 */
function readiness(sql: Sql, checks: ReadinessCheck[]): () => Promise<boolean> {
  let inFlight: Promise<boolean> | null = null;
  const database = async () => {
    await sql`SELECT 1`;
    return true;
  };
  const probe = async () => {
    const results = await Promise.all([database, ...checks].map((check) => withTimeout(check(), 1000)));
    return results.every(Boolean);
  };
  return () =>
    (inFlight ??= probe().finally(() => {
      inFlight = null;
    }));
}

function withTimeout(promise: Promise<boolean>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    promise.then(
      (ok) => {
        clearTimeout(timer);
        resolve(ok);
      },
      () => {
        clearTimeout(timer);
        resolve(false);
      },
    );
  });
}

function graphqlError(message: string, code: string) {
  return { errors: [{ message, extensions: { code } }] };
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
