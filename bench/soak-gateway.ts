/**
 * The gateway of `npm run bench:soak`, as a child process, assembled in-process the way
 * `rowgate serve` assembles it (src/server/serve.ts: capture, change feed, buildApi, createGateway),
 * so that the parent can read RSS, open handles and the live engine's counters over IPC.
 *
 * Started by bench/soak.ts with `node --expose-gc --import tsx bench/soak-gateway.ts <config>` and an
 * IPC channel. Messages from the parent: `{ type: 'stats', gc?: boolean }` → a `SoakGatewayStats`
 * reply; `{ type: 'stop' }` → closes everything and exits.
 */
import { loadAll } from '../src/cli/context.ts';
import { capturedTables } from '../src/cli/capture.ts';
import { installCapture, startChangeFeed } from '../src/db/changes/index.ts';
import { connect, LIVE_APPLICATION_NAME } from '../src/db/index.ts';
import { buildApi } from '../src/schema/index.ts';
import { createAuthenticator } from '../src/server/auth.ts';
import { createGateway } from '../src/server/http.ts';

export interface SoakGatewayStats {
  type: 'stats';
  /** process.memoryUsage(), after a full GC when asked (and --expose-gc is on). */
  rss: number;
  heapUsed: number;
  external: number;
  /** process.getActiveResourcesInfo(): its length, and a count per kind (TCPSocketWrap, Timeout …). */
  resources: number;
  resourceKinds: Record<string, number>;
  /** process._getActiveHandles().length (handles only, no requests or timers of the new kind). */
  handles: number;
  cpuUser: number;
  cpuSystem: number;
  /** LiveEngine.stats and gateway.stats(). */
  statements: number;
  subscriptions: number;
  shapes: number;
  sockets: number;
  wsSubscriptions: number;
  loopDelayMax: number;
  /** Lines the gateway wrote to stderr so far (unexpected errors are logged there). */
  stderrLines: number;
  at: number;
}

export type ToSoakGateway = { type: 'stats'; gc?: boolean } | { type: 'stop' };

const configPath = process.argv[2];
if (!configPath || !process.send) throw new Error('usage: node --import tsx bench/soak-gateway.ts <config> (with an IPC channel)');
const send = (message: unknown) => process.send!(message);

// Count what the gateway logs (masked internal errors, live-engine failures, slow sockets).
let stderrLines = 0;
const write = process.stderr.write.bind(process.stderr) as (chunk: unknown, ...rest: unknown[]) => boolean;
process.stderr.write = ((chunk: unknown, ...rest: unknown[]) => {
  stderrLines += String(chunk).split('\n').filter((l) => l.trim()).length;
  return write(chunk, ...rest);
}) as typeof process.stderr.write;

const { monitorEventLoopDelay } = await import('node:perf_hooks');
const delay = monitorEventLoopDelay({ resolution: 10 });
delay.enable();

const { config, db, catalog, rules } = await loadAll(configPath, { handleSignals: false });
const { tables } = capturedTables(rules, catalog, Object.keys(config.tables));
await installCapture(db.sql, config.database.schema, tables);
// As rowgate serve: the live engine and the feed on a pool of their own (database.livePoolSize).
const livePool = connect(db.url, { max: config.database.livePoolSize }, { statementTimeoutMs: config.limits.statementTimeoutMs, applicationName: LIVE_APPLICATION_NAME });
const feed = await startChangeFeed({ url: db.url, sql: livePool, schema: config.database.schema, retentionHours: config.changeLog.retentionHours });
const { schema, live } = buildApi({ config, catalog, rules, sql: db.sql, liveSql: livePool, changes: feed });
if (!live) throw new Error('no live engine: the change feed is missing');
const gateway = createGateway({ config, schema, sql: db.sql, authenticator: createAuthenticator(config.auth), readiness: [async () => feed.ready()] });
const { url } = await gateway.listen(0, '127.0.0.1');

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  const timer = setTimeout(() => process.exit(2), 20_000);
  try {
    await gateway.close();
    live!.close();
    await feed.close();
    await livePool.end({ timeout: 5 });
    await db.close();
  } finally {
    clearTimeout(timer);
    process.exit(0);
  }
}

process.on('message', (raw) => {
  const message = raw as ToSoakGateway;
  if (message.type === 'stop') return void stop();
  if (message.type !== 'stats') return;
  void (async () => {
    const gc = (globalThis as { gc?: () => void }).gc;
    if (message.gc && gc) {
      // Several rounds with pauses: finalizers and weak references need more than one.
      for (let i = 0; i < 4; i++) {
        gc();
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const mem = process.memoryUsage();
    const cpu = process.cpuUsage();
    const transport = gateway.stats();
    const info = process.getActiveResourcesInfo();
    const resourceKinds: Record<string, number> = {};
    for (const kind of info) resourceKinds[kind] = (resourceKinds[kind] ?? 0) + 1;
    const handles = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles().length;
    const stats: SoakGatewayStats = {
      type: 'stats',
      rss: mem.rss,
      heapUsed: mem.heapUsed,
      external: mem.external,
      resources: info.length,
      resourceKinds,
      handles,
      cpuUser: cpu.user,
      cpuSystem: cpu.system,
      statements: live!.stats.statements,
      subscriptions: live!.stats.subscriptions,
      shapes: live!.stats.shapes,
      sockets: transport.sockets,
      wsSubscriptions: transport.subscriptions,
      loopDelayMax: delay.max / 1e6,
      stderrLines,
      at: Date.now(),
    };
    delay.reset();
    send(stats);
  })();
});
process.on('disconnect', () => void stop());
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());

send({ type: 'listening', url });
