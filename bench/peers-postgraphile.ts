/**
 * The peer of `npm run bench:peers`: PostGraphile v5 (amber preset, grafserv's node adapter with
 * websockets) over the bench database, as a child process.
 *
 * - Connects as PEER_DATABASE_URL's role: not the owner, no BYPASSRLS, so the native policies that
 *   `rowgate policies --apply` installed decide what each caller sees.
 * - The caller: the same HS256 Bearer JWT as the gateway (verified with jose), from the HTTP
 *   `authorization` header or the graphql-ws `connection_init` payload; its sender claim becomes
 *   `pgSettings: { [PEER_SETTING]: … }` (`rowgate.sender`, what rowgate's installed policies read; bench:query's
 *   hand-written policies read `jwt.claims.sub`) in `grafast.context`, which PostGraphile applies per
 *   request with `set_config(…, true)` inside a transaction of its own.
 * - Live updates: PostGraphile v5 has no live queries; its documented mechanism is a subscription field
 *   added with `extendSchema`, whose `subscribePlan` is Grafast's `listen()` on the `pgSubscriber`
 *   (LISTEN/NOTIFY, on by default in `makePgService`) and whose payload exposes `query: Query`, so each
 *   subscriber re-runs its own selection (under its own pgSettings) for every NOTIFY. The bench installs
 *   a statement-level trigger that NOTIFYs `PEER_TOPIC` once per transaction touching account or player.
 *   `listen(…, $initialEvent)` sends one result at subscription time (live-query semantics).
 * - Every statement it sends is counted (a wrapper on the pool's clients); the parent reads the count,
 *   CPU and RSS (after GC) over IPC: `{ type: 'stats', gc? }` → `{ type: 'stats', … }`, `{ type: 'stop' }`.
 *
 * Environment: PEER_DATABASE_URL, PEER_JWT_SECRET, PEER_SENDER_CLAIM (sub), PEER_SETTING (rowgate.sender), PEER_POOL (10), PEER_PORT (0).
 * Prints `listening <port>` on stdout (and sends `{ type: 'listening', url }` over IPC when it has one).
 */
import './peers-node22.ts';
import { createServer } from 'node:http';
import { jwtVerify } from 'jose';
import pg from 'pg';
import { postgraphile } from 'postgraphile';
import { makePgService } from 'postgraphile/adaptors/pg';
import { constant, context, listen } from 'postgraphile/grafast';
import { grafserv } from 'postgraphile/grafserv/node';
import { PostGraphileAmberPreset } from 'postgraphile/presets/amber';
import { extendSchema, gql } from 'postgraphile/utils';
import { jsonParse } from 'postgraphile/@dataplan/json';
import { PEER_TOPIC } from './peers-topic.ts';


const url = process.env['PEER_DATABASE_URL'];
const secretText = process.env['PEER_JWT_SECRET'];
if (!url || !secretText) throw new Error('PEER_DATABASE_URL and PEER_JWT_SECRET are required');
const senderClaim = process.env['PEER_SENDER_CLAIM'] || 'sub';
const setting = process.env['PEER_SETTING'] || 'rowgate.sender';
const secret = new TextEncoder().encode(secretText);

// The pool PostGraphile uses, with every statement counted (BEGIN, set_config, the query, COMMIT …).
let statements = 0;
const pool = new pg.Pool({ connectionString: url, max: Number(process.env['PEER_POOL'] ?? 10) });
pool.on('connect', (client) => {
  const query = client.query.bind(client) as (...args: unknown[]) => unknown;
  (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
    statements++;
    return query(...args);
  };
});

async function senderOf(authorization: unknown): Promise<string | null> {
  const header = Array.isArray(authorization) ? authorization[0] : authorization;
  if (typeof header !== 'string' || !header.startsWith('Bearer ')) return null;
  const { payload } = await jwtVerify(header.slice(7), secret, { algorithms: ['HS256'] });
  const sender = payload[senderClaim];
  return typeof sender === 'string' || typeof sender === 'number' ? String(sender) : null;
}

const BenchChangesPlugin = extendSchema(() => ({
  typeDefs: gql`
    type BenchChangePayload {
      event: String
      query: Query
    }
    extend type Subscription {
      benchChanges: BenchChangePayload
    }
  `,
  objects: {
    Subscription: {
      plans: {
        benchChanges: {
          subscribePlan() {
            const $pgSubscriber = context().get('pgSubscriber');
            return listen($pgSubscriber, PEER_TOPIC, jsonParse, constant(JSON.stringify({ event: 'initial' })));
          },
          plan($event) {
            return $event;
          },
        },
      },
    },
    BenchChangePayload: {
      plans: {
        event($event) {
          return ($event as unknown as { get(key: string): never }).get('event');
        },
        // Query's fields ignore their parent; the event (never null) keeps the selection in the event's
        // bucket, so it is executed for every event (rootValue() is null under grafserv: \`query\` was null).
        query($event) {
          return $event;
        },
      },
    },
  },
}));

const preset: GraphileConfig.Preset = {
  extends: [PostGraphileAmberPreset],
  plugins: [BenchChangesPlugin],
  pgServices: [makePgService({ pool, schemas: ['public'], pubsub: true })],
  grafserv: { websockets: true, graphqlPath: '/graphql', graphiql: false },
  grafast: {
    explain: false,
    async context(requestContext) {
      const ctx = requestContext as { node?: { req?: { headers: Record<string, unknown> } }; ws?: { normalizedConnectionParams?: Record<string, unknown> } };
      const authorization = ctx.ws ? ctx.ws.normalizedConnectionParams?.['authorization'] : ctx.node?.req?.headers['authorization'];
      const sender = await senderOf(authorization);
      // No sender: the setting is '' (NULL for the policies), which matches nothing.
      return { pgSettings: { [setting]: sender ?? '' } };
    },
  },
};

const pgl = postgraphile(preset);
const serv = pgl.createServ(grafserv);
const server = createServer();
server.keepAliveTimeout = 60_000;
await serv.addTo(server);
await pgl.getSchema();
await new Promise<void>((resolve) => server.listen(Number(process.env['PEER_PORT'] ?? 0), '127.0.0.1', resolve));
const address = server.address();
const port = typeof address === 'object' && address ? address.port : 0;

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  const timer = setTimeout(() => process.exit(2), 15_000);
  server.closeAllConnections();
  server.close();
  await serv.release().catch(() => {});
  await pgl.release();
  await pool.end().catch(() => {});
  clearTimeout(timer);
  process.exit(0);
}

process.on('message', (raw) => {
  const message = raw as { type: string; gc?: boolean };
  if (message.type === 'stop') return void stop();
  if (message.type === 'stats') {
    void (async () => {
      const gc = (globalThis as { gc?: () => void }).gc;
      if (message.gc && gc) {
        for (let i = 0; i < 3; i++) {
          gc();
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      const mem = process.memoryUsage();
      const cpu = process.cpuUsage();
      process.send!({ type: 'stats', rss: mem.rss, heapUsed: mem.heapUsed, cpuUser: cpu.user, cpuSystem: cpu.system, statements, at: Date.now() });
    })();
  }
});
process.on('disconnect', () => void stop());
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());

process.stdout.write(`listening ${port}\n`);
if (process.send) process.send({ type: 'listening', url: `http://127.0.0.1:${port}/graphql` });
