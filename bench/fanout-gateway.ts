/**
 * The gateway of `npm run bench:fanout`, as a child process: assembled in-process the way
 * `rowgate serve` assembles it (src/server/serve.ts: capture, change feed, buildApi, createGateway),
 * so the parent can read `live.stats`, RSS and CPU over IPC.
 *
 * Started by bench/fanout.ts with `node --expose-gc --import tsx bench/fanout-gateway.ts <config>`
 * and an IPC channel. Messages from the parent: `{ type: 'stats', gc?: boolean }` → a `GatewayStats`
 * reply; `{ type: 'stop' }` → closes everything and exits.
 */
import { Session } from 'node:inspector/promises';
import { writeFile } from 'node:fs/promises';
import { loadAll } from '../src/cli/context.ts';
import { capturedTables } from '../src/cli/capture.ts';
import { installCapture, startChangeFeed } from '../src/db/changes/index.ts';
import { buildApi } from '../src/schema/index.ts';
import { createAuthenticator } from '../src/server/auth.ts';
import { createGateway } from '../src/server/http.ts';

export interface GatewayStats {
  type: 'stats';
  /** process.memoryUsage() after a full GC when the parent asked for one (and --expose-gc is on). */
  rss: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  /** process.cpuUsage() since start, µs. */
  cpuUser: number;
  cpuSystem: number;
  /** LiveEngine.stats. */
  statements: number;
  subscriptions: number;
  shapes: number;
  /** gateway.stats(). */
  sockets: number;
  wsSubscriptions: number;
  /** Event-loop delay of the last interval (ms): how busy the gateway's one thread is. */
  /** Wall time of the live engine's statements, issue to rows (ms), and rows they returned. */
  liveDbMs: number;
  liveRows: number;
  loopDelayP99: number;
  loopDelayMax: number;
  at: number;
}

export type ToGateway = { type: 'stats'; gc?: boolean } | { type: 'stop' } | { type: 'last-statement' } | { type: 'profile-start' } | { type: 'profile-stop'; file: string };

const configPath = process.argv[2];
if (!configPath || !process.send) throw new Error('usage: node --import tsx bench/fanout-gateway.ts <config> (with an IPC channel)');
const send = (message: unknown) => process.send!(message);

const { monitorEventLoopDelay } = await import('node:perf_hooks');
const delay = monitorEventLoopDelay({ resolution: 10 });
delay.enable();

const { config, db, catalog, rules } = await loadAll(configPath, { handleSignals: false });
const { tables } = capturedTables(rules, catalog, Object.keys(config.tables));
await installCapture(db.sql, config.database.schema, tables);
const feed = await startChangeFeed({ url: db.url, sql: db.sql, schema: config.database.schema, retentionHours: config.changeLog.retentionHours });
// The live engine's statements go through a recording proxy: time in PostgreSQL (issue → rows) and
// the last multiplexed statement (for EXPLAIN in the parent). Everything else passes through.
let liveDbMs = 0;
let liveRows = 0;
let lastLive: { text: string; values: unknown[]; subscribers: number } | null = null;
// Evaluations of given subscribers (`x.hash IS DISTINCT FROM`) and of those a commit's root rows
// concern, tested over the shape's roster (`jsonb_to_recordset`).
const isLiveStatement = (text: string) => text.includes('x.hash IS DISTINCT FROM') || text.includes('jsonb_to_recordset(');
const recording = new Proxy(db.sql, {
  get(target, prop, receiver) {
    if (prop === 'unsafe') {
      return (text: string, values: unknown[] = [], options?: unknown) => {
        const query = (target.unsafe as (...args: unknown[]) => Promise<unknown[]>)(text, values, options);
        if (isLiveStatement(text)) {
          const started = performance.now();
          const sids = values[0];
          if (text.includes('x.hash IS DISTINCT FROM')) lastLive = { text, values, subscribers: Array.isArray(sids) ? sids.length : 0 };
          query.then(
            (rows) => {
              liveDbMs += performance.now() - started;
              liveRows += rows.length;
            },
            () => {},
          );
        }
        return query;
      };
    }
    return Reflect.get(target, prop, receiver) as unknown;
  },
}) as typeof db.sql;
const { schema, live } = buildApi({ config, catalog, rules, sql: recording, changes: feed });
if (!live) throw new Error('no live engine: the change feed is missing');
const gateway = createGateway({ config, schema, sql: db.sql, authenticator: createAuthenticator(config.auth), readiness: [async () => feed.ready()] });
const { url } = await gateway.listen(0, '127.0.0.1');

let profiler: Session | null = null;
let stopping = false;

async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  const timer = setTimeout(() => process.exit(2), 20_000);
  try {
    await gateway.close();
    live!.close();
    await feed.close();
    await db.close();
  } finally {
    clearTimeout(timer);
    process.exit(0);
  }
}

process.on('message', (raw) => {
  const message = raw as ToGateway;
  if (message.type === 'stop') return void stop();
  if (message.type === 'last-statement') return void send({ type: 'last-statement', statement: lastLive });
  if (message.type === 'profile-start') {
    void (async () => {
      profiler = new Session();
      profiler.connect();
      await profiler.post('Profiler.enable');
      await profiler.post('Profiler.start');
      send({ type: 'profile-started' });
    })();
    return;
  }
  if (message.type === 'profile-stop') {
    void (async () => {
      if (!profiler) return send({ type: 'profile-stopped', file: null });
      const { profile } = await profiler.post('Profiler.stop');
      profiler.disconnect();
      profiler = null;
      await writeFile(message.file, JSON.stringify(profile));
      send({ type: 'profile-stopped', file: message.file });
    })();
    return;
  }
  if (message.type === 'stats') {
    void (async () => {
      const gc = (globalThis as { gc?: () => void }).gc;
      if (message.gc && gc) {
        // Several rounds with pauses: finalizers and weak references need more than one.
        for (let i = 0; i < 3; i++) {
          gc();
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      const mem = process.memoryUsage();
      const cpu = process.cpuUsage();
      const transport = gateway.stats();
      const stats: GatewayStats = {
        type: 'stats',
        rss: mem.rss,
        heapUsed: mem.heapUsed,
        external: mem.external,
        arrayBuffers: mem.arrayBuffers,
        cpuUser: cpu.user,
        cpuSystem: cpu.system,
        statements: live!.stats.statements,
        subscriptions: live!.stats.subscriptions,
        shapes: live!.stats.shapes,
        sockets: transport.sockets,
        wsSubscriptions: transport.subscriptions,
        liveDbMs,
        liveRows,
        loopDelayP99: delay.percentile(99) / 1e6,
        loopDelayMax: delay.max / 1e6,
        at: Date.now(),
      };
      delay.reset();
      send(stats);
    })();
  }
});
process.on('disconnect', () => void stop());
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());

send({ type: 'listening', url, subscribersPerStatement: config.limits.subscribersPerStatement });
