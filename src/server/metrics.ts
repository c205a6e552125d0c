import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { EvaluationKind, LiveStats } from '../live/index.ts';
import type { RequestRecord } from './request-record.ts';

/**
 * The gateway's Prometheus metrics (prom-client). Counters and the histograms are fed as things
 * happen; gauges read the transports' and the live engine's own counts when scraped, so nothing is
 * counted twice and a scrape never disagrees with `gateway.stats()`.
 */

export interface MetricsSources {
  /** Open WebSockets, their subscriptions, open SSE streams. */
  transports(): { sockets: number; subscriptions: number; sseStreams: number };
  /** The live engine's counts, when the gateway has one. */
  live?: (() => LiveStats) | undefined;
}

export interface GatewayMetrics {
  /** An HTTP request to /graphql has closed: `status` sent, `seconds` after it arrived. */
  requestDone(record: RequestRecord, status: number, seconds: number): void;
  /** An SSE subscription has started (counted now rather than when it ends). */
  streamStarted(record: RequestRecord): void;
  /** Errors sent in an SSE stream's events. */
  streamErrors(codes: readonly string[]): void;
  /** A GraphQL operation arrived on a WebSocket (`unknown` when it did not parse). */
  wsOperation(type: string): void;
  /** Errors sent on a WebSocket. */
  wsErrors(codes: readonly string[]): void;
  /** One live evaluation ran. */
  evaluated(kind: EvaluationKind, seconds: number): void;
  /** The change feed delivered a batch whose newest change was `lagSeconds` old. */
  feedDelivered(lagSeconds: number): void;
  /** A reload (SIGHUP, serve --watch) ended with `outcome`. */
  reloaded(outcome: string): void;
  /** The exposition: process metrics (nodejs_*, process_*) then the gateway's. */
  render(): Promise<{ contentType: string; body: string }>;
}

/** Request latencies (s): from a few ms (a cached by-pk read) to the 10 s statement timeout. */
const REQUEST_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Evaluations are one statement per ≤ 1,000 subscribers: ms to seconds. */
const EVALUATION_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
/** The feed reads on a notification (ms) or on its 500 ms poll; minutes mean it is stuck or was down. */
const LAG_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

let processRegistry: Registry | null = null;

/**
 * Node's process metrics, once per process: prom-client's collector installs a GC observer and an
 * event-loop monitor that are never removed, so one per gateway would leak with every gateway made.
 */
function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

export function createMetrics(sources: MetricsSources): GatewayMetrics {
  const registry = new Registry();
  const registers = [registry];

  const operations = new Counter({
    name: 'rowgate_graphql_operations_total',
    help: 'GraphQL operations received, by transport (http, sse, ws) and operation type (query, mutation, subscription; unknown when it did not parse)',
    labelNames: ['transport', 'operation_type'] as const,
    registers,
  });
  const errors = new Counter({
    name: 'rowgate_graphql_errors_total',
    help: 'Errors sent to clients, by transport and extensions.code (UNCODED when an error has none)',
    labelNames: ['transport', 'code'] as const,
    registers,
  });
  const duration = new Histogram({
    name: 'rowgate_http_request_duration_seconds',
    help: 'Time from an HTTP request to /graphql arriving to its response being sent, by operation type and status (SSE streams excluded)',
    labelNames: ['operation_type', 'status'] as const,
    buckets: REQUEST_BUCKETS,
    registers,
  });
  const evaluations = new Histogram({
    name: 'rowgate_live_evaluation_duration_seconds',
    help: 'Live evaluations (a live query or change stream re-evaluated for its subscribers after commits or on subscribe), by kind',
    labelNames: ['kind'] as const,
    buckets: EVALUATION_BUCKETS,
    registers,
  });
  const feedLag = new Histogram({
    name: 'rowgate_change_feed_lag_seconds',
    help: "Age of the newest change of each batch the change feed delivers: from its writing transaction's start to the feed reading it, on the database's clock",
    buckets: LAG_BUCKETS,
    registers,
  });
  const reloads = new Counter({
    name: 'rowgate_reloads_total',
    help: 'Reloads of the config and the catalog (SIGHUP, serve --watch), by outcome: applied (a new schema is served), unchanged (nothing differed), failed (the old schema stays)',
    labelNames: ['outcome'] as const,
    registers,
  });
  const gauge = (name: string, help: string, read: () => number) =>
    new Gauge({
      name,
      help,
      registers,
      collect() {
        this.set(read());
      },
    });
  gauge('rowgate_websocket_sockets', 'Open graphql-ws sockets', () => sources.transports().sockets);
  gauge('rowgate_websocket_subscriptions', 'Subscription operations running on graphql-ws sockets', () => sources.transports().subscriptions);
  gauge('rowgate_sse_streams', 'Open SSE responses (one subscription each)', () => sources.transports().sseStreams);
  const live = sources.live;
  if (live) {
    gauge('rowgate_live_subscriptions', 'Subscriptions the live engine runs: live queries, change streams and streams, over any transport', () => live().subscriptions);
    gauge('rowgate_live_shapes', 'Distinct operation shapes the live engine evaluates (subscribers of a shape share statements)', () => live().shapes);
    let counted = 0;
    new Counter({
      name: 'rowgate_live_statements_total',
      help: 'SQL statements the live engine has run',
      registers,
      collect() {
        const now = live().statements;
        this.inc(now - counted);
        counted = now;
      },
    });
  }

  return {
    requestDone(record, status, seconds) {
      // A stream was counted when it started, and its events' errors as they were sent.
      if (record.stream) return;
      const type = record.operationType ?? 'unknown';
      operations.inc({ transport: record.transport, operation_type: type });
      for (const code of record.codes) errors.inc({ transport: record.transport, code });
      duration.observe({ operation_type: type, status: String(status) }, seconds);
    },
    streamStarted(record) {
      operations.inc({ transport: 'sse', operation_type: record.operationType ?? 'unknown' });
    },
    streamErrors(codes) {
      for (const code of codes) errors.inc({ transport: 'sse', code });
    },
    wsOperation(type) {
      operations.inc({ transport: 'ws', operation_type: type });
    },
    wsErrors(codes) {
      for (const code of codes) errors.inc({ transport: 'ws', code });
    },
    evaluated(kind, seconds) {
      evaluations.observe({ kind }, seconds);
    },
    feedDelivered(lagSeconds) {
      feedLag.observe(lagSeconds);
    },
    reloaded(outcome) {
      reloads.inc({ outcome });
    },
    async render() {
      const [process, gateway] = await Promise.all([processMetrics().metrics(), registry.metrics()]);
      return { contentType: registry.contentType, body: `${process}\n${gateway}` };
    },
  };
}
