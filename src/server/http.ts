import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TracerProvider } from '@opentelemetry/api';
import type { GraphQLSchema } from 'graphql';
import { createYoga, type YogaServerInstance } from 'graphql-yoga';
import type { Config } from '../config/index.ts';
import type { CaptureInfo, ChangeBatch } from '../db/changes/index.ts';
import type { Sql } from '../db/index.ts';
import type { LiveEngine, LiveObserver } from '../live/index.ts';
import { useMutationTransaction, usePassThrough } from '../resolvers/index.ts';
import type { GraphQLContext } from '../schema/context.ts';
import type { Authenticator } from './auth.ts';
import { useCallerConcurrency } from './concurrency.ts';
import { hasuraErrorCodes, useHasuraErrorCodes } from './hasura-codes.ts';
import { useSessionExpiry } from './expiry.ts';
import { createLogger, REQUEST_ID_HEADER, requestId, type Logger } from './log.ts';
import { METRICS_PATH, metricsAccess } from './metrics-access.ts';
import { createMetrics, type GatewayMetrics } from './metrics.ts';
import { createMaskError, useCaller, useErrorCodes, useGraphQLSubscribe, useQueryLimits, type InternalErrorLogger } from './plugins.ts';
import { newRecord, useRequestRecord, type RequestRecord } from './request-record.ts';
import { useResumableSse } from './sse.ts';
import { useTracing } from './tracing.ts';
import { createWebSocketTransport, type SlowSocket, type WebSocketObserver } from './ws.ts';

export const GRAPHQL_PATH = '/graphql';

/** What node:http hands yoga for each request; the WebSocket transport passes its own. */
export interface ServerContext {
  req: IncomingMessage;
  res: ServerResponse;
  /** What the request did, for its log line and the metrics (request-record.ts). */
  record: RequestRecord;
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
  /** The runtime log (request lines, internal errors, slow sockets); defaults to pino on stdout at `log.level`. */
  logger?: Logger;
  /** Where masked internal errors go; defaults to the logger, at level error. */
  logInternalError?: InternalErrorLogger;
  /** How long `close()` waits for in-flight requests before cutting connections (ms). */
  shutdownGraceMs?: number;
  /** Told about every WebSocket closed (1013) because its client read too slowly; defaults to the logger, at level warn. */
  onSlowSocket?: (info: SlowSocket) => void;
  /** What GraphiQL opens with (the demo pre-fills a token in the Headers tab). */
  graphiql?: { headers?: string; defaultQuery?: string };
  /** The live engine, for the subscription and evaluation metrics and its log. */
  live?: LiveEngine | null;
  /** The capture in use, reported by `/readyz` (mode, slot, retained WAL). */
  capture?: () => Promise<CaptureInfo>;
  /** The change feed, for its lag metric. */
  feed?: { onChanges(listener: (batch: ChangeBatch) => void): () => void };
  /** Where spans go with `tracing.enabled`; defaults to OpenTelemetry's global provider. */
  tracerProvider?: TracerProvider;
  /**
   * Answer queries that need no resolver work with PostgreSQL's JSON text (resolvers/passthrough.ts);
   * default true. false runs every operation through graphql-js (the differential test's other side).
   */
  passThrough?: boolean;
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
  /** Listens on `port`, and on `metrics.port` (same host) when set; `metricsUrl` is then that listener's /metrics. */
  listen(port: number, host?: string): Promise<{ url: string; metricsUrl?: string }>;
  /**
   * Stops accepting, closes every WebSocket with 1001 and ends every SSE stream, lets in-flight
   * requests finish (up to the grace period), disposes yoga.
   */
  close(): Promise<void>;
  stats(): TransportStats;
  /**
   * Serves `schema` from now on (a reload, server/reload.ts): every request and every operation on
   * a socket that starts after this runs on it; operations already running finish on the old one.
   * `live` is the engine behind its subscriptions. With `settings`, the keys a reload applies
   * without a restart take their new values too (HOT_KEYS in reload.ts): the authenticator (for
   * every request and socket that authenticates from now on), `auth.allowedOrigins`, the
   * gateway's limits and `log.level`.
   */
  swap(schema: GraphQLSchema, live: LiveEngine | null, settings?: HotSettings): void;
  /** Counts one reload by outcome (`rowgate_reloads_total`). */
  reloaded(outcome: ReloadOutcome): void;
}

/** What a reload may change without a restart, besides the schema (server/reload.ts). */
export interface HotSettings {
  /** The config as reloaded: its `auth`, `limits` and `log.level` are read from here on. */
  config: Config;
  authenticator: Authenticator;
}

/** applied: a new schema is served; unchanged: nothing differed; failed: the old schema stays. */
export type ReloadOutcome = 'applied' | 'unchanged' | 'failed';

/**
 * The HTTP side of the gateway: yoga on node:http at `/graphql`, `/healthz`, `/readyz`,
 * `/metrics` (unless on its own port), and 404 elsewhere. The Origin allow-list and the body-size
 * limit are enforced here, before yoga sees the request; everything GraphQL-shaped (auth, limits,
 * masking) lives in yoga plugins. Every request gets an id (`x-request-id`) and one log line.
 */
export function createGateway(options: GatewayOptions): Gateway {
  const { config, schema, sql } = options;
  // The keys a reload may change (swap): read through `current` wherever they are used.
  let current: HotSettings = { config, authenticator: options.authenticator };
  const authenticator: Authenticator = {
    fromRequest: (headers) => current.authenticator.fromRequest(headers),
    fromConnectionParams: (params) => current.authenticator.fromConnectionParams(params),
    sessionFromRequest: (headers) => current.authenticator.sessionFromRequest(headers),
    sessionFromConnectionParams: (params) => current.authenticator.sessionFromConnectionParams(params),
  };
  const limits = () => current.config.limits;
  // Read once: the WebSocket server's largest message is fixed when it is made (needs a restart).
  const maxBodyBytes = config.limits.maxBodyBytes;
  const logger = options.logger ?? createLogger(config.log.level);
  const logInternalError = options.logInternalError ?? ((err: unknown) => logger.error({ err }, 'internal error'));
  const maskError = createMaskError(logInternalError);
  // envelop's schema is one for all requests; setting it makes every later envelope use the new one.
  let replaceSchema: ((schema: GraphQLSchema) => void) | null = null;

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
    // limits.maxBodyBytes is enforced before yoga sees the request (readBody below); yoga's own limit
    // piped every body through a web stream again (AbortSignals and a DOMException per request).
    maxRequestBodySize: false,
    maskedErrors: { maskError },
    cors: (request) => {
      const origin = request.headers.get('origin');
      // Disallowed origins never get here (403 below); echo the allowed one.
      return origin ? { origin: [origin], credentials: true } : {};
    },
    // The transaction wraps execution, so it sees every root field of a mutation and its errors;
    // the per-caller limit wraps the transaction and the pass-through, so a refused operation never
    // takes a connection.
    // Hasura's codes are mapped after the request record has counted rowgate's.
    plugins: [
      { onPluginInit: ({ setSchema }: { setSchema: (schema: GraphQLSchema) => void }) => void (replaceSchema = setSchema) },
      useRequestRecord({ started: (record) => metrics?.streamStarted(record), errors: (codes) => metrics?.streamErrors(codes) }),
      ...(config.graphql.errorCodes === 'hasura' ? [useHasuraErrorCodes()] : []),
      useCaller(authenticator),
      useSessionExpiry(),
      useErrorCodes(),
      useQueryLimits({ maxDepth: () => limits().maxDepth }),
      useMutationTransaction(sql),
      ...(options.passThrough === false ? [] : [usePassThrough()]),
      useCallerConcurrency(() => limits().perCallerConcurrency),
      useGraphQLSubscribe(),
      useResumableSse(),
      // After useGraphQLSubscribe: tracing wraps the subscribe function that is set when its hook runs.
      ...(config.tracing.enabled ? [useTracing(options.tracerProvider)] : []),
    ],
  });

  const ready = readiness(sql, options.readiness ?? []);
  // What /readyz says of the capture: the WAL a stopped or lagging reader makes the server keep.
  const captureReport = async (): Promise<Record<string, unknown> | null> => {
    if (!options.capture) return null;
    try {
      const c = await options.capture();
      return c.mode === 'wal'
        ? { mode: 'wal', slot: c.slot, leading: c.leading, slotStatus: c.slotState?.walStatus ?? 'missing', confirmedLsn: c.slotState?.confirmedLsn ?? null, retainedWalBytes: c.slotState?.retainedBytes === null || c.slotState?.retainedBytes === undefined ? null : Number(c.slotState.retainedBytes) }
        : { mode: c.mode };
    } catch {
      return null;
    }
  };
  const graceMs = options.shutdownGraceMs ?? 10_000;

  const live = options.live ?? null;
  // Gauges read the transports' counts when scraped, so `stats` may name the transports made below.
  const metrics = config.metrics.enabled ? createMetrics({ transports: () => stats(), live: live ? () => live.stats : undefined }) : null;
  const wsObserver: WebSocketObserver = {
    operation: (type) => metrics?.wsOperation(type),
    errors: (codes) => metrics?.wsErrors(codes),
  };
  const webSockets = createWebSocketTransport({
    yoga,
    authenticator,
    allowedOrigins: () => current.config.auth.allowedOrigins,
    maxSubscriptionsPerSocket: () => limits().maxSubscriptionsPerSocket,
    maxPayloadBytes: maxBodyBytes,
    maxBufferedBytes: () => limits().maxSocketBufferBytes,
    onSlowSocket: options.onSlowSocket ?? ((info) => logger.warn(info, 'closed a WebSocket whose client reads too slowly (limits.maxSocketBufferBytes)')),
    observe: wsObserver,
    maskError,
    ...(config.graphql.errorCodes === 'hasura' ? { mapErrors: hasuraErrorCodes } : {}),
    logInternalError,
    path: GRAPHQL_PATH,
  });
  /** SSE responses in flight: they never finish on their own, so close() ends them. */
  const streams = new Set<ServerResponse>();
  const stats = (): TransportStats => ({ ...webSockets.stats(), sseStreams: streams.size });
  const liveObserver: LiveObserver = {
    evaluated: (kind, seconds) => metrics?.evaluated(kind, seconds),
    error: (message, err) => logger.error({ err }, `live: ${message}`),
  };
  if (live) live.observer = liveObserver;
  const unfollowFeed = metrics && options.feed ? options.feed.onChanges((batch) => metrics.feedDelivered(batch.lagSeconds)) : null;
  const metricsOnMain = config.metrics.port === null;
  let mayReadMetrics = metricsAccess(config);

  /** Requests being answered: those still to send headers when close() starts are told to close their connection. */
  const inFlight = new Set<ServerResponse>();
  let closing: Promise<void> | null = null;

  const server = createServer((req, res) => {
    const record = newRecord(requestId(req), req.headers.accept?.includes('text/event-stream') ? 'sse' : 'http');
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    res.setHeader(REQUEST_ID_HEADER, record.id);
    inFlight.add(res);
    res.once('close', () => {
      inFlight.delete(res);
      requestClosed(req, res, path, record);
    });
    // A request that arrives on a kept-alive connection during shutdown is answered, then the connection closes.
    if (closing) res.setHeader('connection', 'close');
    void route(req, res, path, record).catch((err: unknown) => {
      logInternalError(err);
      if (!res.headersSent) refuse(res, record, 500, 'Internal server error', 'INTERNAL_SERVER_ERROR');
      else res.destroy();
    });
  });
  server.on('upgrade', webSockets.handleUpgrade);

  /** `/metrics` alone, without credentials, for `metrics.port`: that port is meant to be reachable by the scraper only. */
  const metricsServer =
    metrics !== null && config.metrics.port !== null
      ? createServer((req, res) => {
          const path = new URL(req.url ?? '/', 'http://localhost').pathname;
          if (path !== METRICS_PATH) return sendJson(res, 404, { errors: [{ message: `not found: ${path} (this port serves ${METRICS_PATH} only)` }] });
          sendMetrics(res, metrics).catch((err: unknown) => {
            logInternalError(err);
            res.destroy();
          });
        })
      : null;

  async function route(req: IncomingMessage, res: ServerResponse, path: string, record: RequestRecord): Promise<void> {
    if (path === '/healthz') return sendJson(res, 200, { status: 'ok' });
    if (path === '/readyz') {
      const ok = await ready();
      const capture = await captureReport();
      return sendJson(res, ok ? 200 : 503, { status: ok ? 'ready' : 'unavailable', ...(capture ? { capture } : {}) });
    }
    if (path === METRICS_PATH && metrics && metricsOnMain) {
      if (!mayReadMetrics(req.headers)) {
        return refuse(res, record, 401, `${METRICS_PATH} needs the admin secret (x-rowgate-admin-secret) or Authorization: Bearer <metrics.token>`, 'UNAUTHENTICATED');
      }
      return sendMetrics(res, metrics);
    }
    if (path !== GRAPHQL_PATH) return sendJson(res, 404, { errors: [{ message: `not found: ${path} (GraphQL is at ${GRAPHQL_PATH})` }] });

    const origin = req.headers.origin;
    if (origin !== undefined && !originAllowed(current.config.auth.allowedOrigins, origin)) {
      return refuse(res, record, 403, 'this Origin is not allowed (auth.allowedOrigins)', 'FORBIDDEN');
    }
    if (req.method === 'POST') {
      const body = await readBody(req, maxBodyBytes);
      if (body === null) {
        res.setHeader('connection', 'close');
        return refuse(res, record, 413, `the request body is larger than ${maxBodyBytes} bytes (limits.maxBodyBytes)`, 'LIMIT_EXCEEDED');
      }
      // yoga (through @whatwg-node/server) reads an already-consumed body from `req.body`.
      (req as IncomingMessage & { body?: Buffer }).body = body;
    }
    // One SSE request is one operation; a client that goes away aborts it and yoga returns its iterator.
    if (record.transport === 'sse') {
      streams.add(res);
      res.once('close', () => streams.delete(res));
    }
    await yoga.handle(req, res, { req, res, record });
  }

  /**
   * One log line per request, and the request metrics for /graphql. Probes and scrapes log at
   * debug, so a load balancer polling /readyz does not drown the requests. No query text,
   * variables, headers or data: the operation's name and type, status, duration and error codes.
   */
  function requestClosed(req: IncomingMessage, res: ServerResponse, path: string, record: RequestRecord): void {
    const seconds = (performance.now() - record.started) / 1000;
    const status = res.statusCode;
    if (path === GRAPHQL_PATH) metrics?.requestDone(record, status, seconds);
    const line = {
      reqId: record.id,
      method: req.method,
      path,
      status,
      durationMs: Math.round(seconds * 10_000) / 10,
      ...(record.operationType ? { operationType: record.operationType } : {}),
      ...(record.operationName ? { operationName: record.operationName } : {}),
      ...(record.codes.length ? { errors: record.codes } : {}),
      ...(record.stream ? { sse: true } : {}),
      // The client went away before the whole response was sent (or an SSE stream it ended).
      ...(res.writableFinished ? {} : { aborted: true }),
    };
    if (path === '/healthz' || path === '/readyz' || path === METRICS_PATH) logger.debug(line, 'request');
    else logger.info(line, 'request');
  }

  return {
    server,
    yoga,
    async listen(port, host = '127.0.0.1') {
      const url = `${await listenOn(server, port, host)}${GRAPHQL_PATH}`;
      if (!metricsServer) return { url };
      return { url, metricsUrl: `${await listenOn(metricsServer, config.metrics.port!, host)}${METRICS_PATH}` };
    },
    stats,
    swap(next, nextLive, settings) {
      if (nextLive) nextLive.observer = liveObserver;
      if (settings) {
        current = settings;
        // The admin secret may have changed: it also opens /metrics.
        mayReadMetrics = metricsAccess(settings.config);
        logger.level = settings.config.log.level;
      }
      replaceSchema!(next);
    },
    reloaded: (outcome) => metrics?.reloaded(outcome),
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        unfollowFeed?.();
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
      }).then(() => Promise.all([yoga.dispose(), metricsServer && closeServer(metricsServer)]).then(() => {}))),
  };
}

/** Listens; resolves with `http://host:port` as bound. */
function listenOn(server: Server, port: number, host: string): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      const address = server.address() as AddressInfo;
      const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
      resolve(`http://${shownHost}:${address.port}`);
    });
  });
}

/** Stops a server that holds no long-lived requests (a scrape is one short response). */
function closeServer(server: Server): Promise<void> {
  if (!server.listening) return Promise.resolve();
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

async function sendMetrics(res: ServerResponse, metrics: GatewayMetrics): Promise<void> {
  const { contentType, body } = await metrics.render();
  res.writeHead(200, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) });
  res.end(body);
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

/** Answers with one coded GraphQL error, before or instead of yoga, and records its code. */
function refuse(res: ServerResponse, record: RequestRecord, status: number, message: string, code: string): void {
  record.codes.push(code);
  sendJson(res, status, { errors: [{ message, extensions: { code } }] });
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
