import { GraphQLInt, GraphQLNonNull, GraphQLObjectType, GraphQLSchema, GraphQLString } from 'graphql';
import { createClient, type Client, type FormattedExecutionResult } from 'graphql-ws';
import { afterAll } from 'vitest';
import WebSocket from 'ws';
import { parseConfig, type Config } from '../../src/config/index.ts';
import { connect } from '../../src/db/index.ts';
import type { GraphQLContext } from '../../src/schema/context.ts';
import { createAuthenticator } from '../../src/server/auth.ts';
import { createGateway, type Gateway } from '../../src/server/http.ts';
import { createLogger } from '../../src/server/log.ts';
import { signToken } from '../../src/server/token.ts';

type Result = FormattedExecutionResult<Record<string, unknown>, unknown>;

/**
 * A gateway around a tiny schema with subscriptions, to test the live transports (graphql-ws and
 * SSE) apart from what the subscriptions compute. No database: the pool is never used.
 */

export const SECRET = 'transport-test-secret-0123456789abcdef01';
export const ADMIN_SECRET = 'transport-admin-secret';

/** What the schema's generators report, so tests can wait for them (never sleep). */
export class Probe {
  /** How many countdown generators were ended early (their `return()` ran). */
  returned = 0;
  private waiters: { check: () => boolean; resolve: () => void }[] = [];

  changed(): void {
    this.waiters = this.waiters.filter((w) => {
      if (!w.check()) return true;
      w.resolve();
      return false;
    });
  }

  /** Resolves once `check` holds (checked now and after every change). */
  until(check: () => boolean): Promise<void> {
    if (check()) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ check, resolve }));
  }
}

/** A pause inside the generators between items, so streams interleave with client messages. */
const tick = () => new Promise<void>((resolve) => setTimeout(resolve, 2));

export function transportSchema(probe: Probe): GraphQLSchema {
  const query = new GraphQLObjectType<unknown, GraphQLContext>({
    name: 'Query',
    fields: { hello: { type: GraphQLString, resolve: () => 'world' } },
  });
  const subscription = new GraphQLObjectType<unknown, GraphQLContext>({
    name: 'Subscription',
    fields: {
      countdown: {
        type: GraphQLInt,
        args: { from: { type: new GraphQLNonNull(GraphQLInt) } },
        subscribe: async function* (_root, args: { from: number }) {
          let finished = false;
          try {
            for (let n = args.from; n >= 0; n -= 1) {
              yield { countdown: n };
              await tick();
            }
            finished = true;
          } finally {
            // Reached without `finished` only when the consumer called return().
            if (!finished) {
              probe.returned += 1;
              probe.changed();
            }
          }
        },
      },
      whoami: {
        type: GraphQLString,
        subscribe: async function* (_root, _args, ctx) {
          yield { whoami: ctx.caller.admin ? `admin:${ctx.caller.identity.sender ?? ''}` : ctx.caller.identity.sender };
        },
      },
      boom: {
        type: GraphQLInt,
        subscribe: async function* () {
          yield { boom: 1 };
          throw new Error('relation "secret_internal_table" exploded at 10.0.0.7');
        },
      },
    },
  });
  return new GraphQLSchema({ query, subscription });
}

export interface TransportGateway {
  url: string;
  wsUrl: string;
  config: Config;
  gateway: Gateway;
  probe: Probe;
  internalErrors: unknown[];
  token(sender: string, expires?: string | number): Promise<string>;
}

/** A gateway with `config` merged over the test secrets, on a free port; closed after the file's tests. */
export async function startTransportGateway(config: Record<string, unknown> = {}): Promise<TransportGateway> {
  const auth = (config['auth'] ?? {}) as Record<string, unknown>;
  const jwt = (auth['jwt'] ?? {}) as Record<string, unknown>;
  const parsed = parseConfig({ tables: {}, ...config, auth: { adminSecret: ADMIN_SECRET, ...auth, jwt: { secret: SECRET, ...jwt } } }, {});
  const sql = connect('postgres://unused:unused@127.0.0.1:1/unused', { max: 1 });
  const probe = new Probe();
  const internalErrors: unknown[] = [];
  const gateway = createGateway({
    config: parsed,
    schema: transportSchema(probe),
    sql,
    authenticator: createAuthenticator(parsed.auth),
    logInternalError: (err) => internalErrors.push(err),
    logger: createLogger('silent'),
  });
  const { url } = await gateway.listen(0);
  afterAll(async () => {
    await gateway.close();
    await sql.end({ timeout: 1 });
  });
  return {
    url,
    wsUrl: url.replace(/^http/, 'ws'),
    config: parsed,
    gateway,
    probe,
    internalErrors,
    token: (sender, expires = '1h') => signToken(parsed, { sender, expires }),
  };
}

/** Rejects when `promise` has not settled within `ms`: a bound on waiting for an event, not a sleep. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export interface Closed {
  code: number;
  reason: string;
}

export interface TestClient {
  client: Client;
  /** Resolves when the server acknowledged `connection_init`. */
  connected: Promise<void>;
  /** Resolves with the first close event. */
  closed: Promise<Closed>;
}

/** A graphql-ws client (the real one, over `ws`) that connects at once and never retries. */
export function wsClient(url: string, connectionParams: Record<string, unknown> | undefined, options: { origin?: string } = {}): TestClient {
  let onConnected!: () => void;
  let onClosed!: (closed: Closed) => void;
  const connected = new Promise<void>((resolve) => (onConnected = resolve));
  const closed = new Promise<Closed>((resolve) => (onClosed = resolve));
  const origin = options.origin;
  const webSocketImpl =
    origin === undefined
      ? WebSocket
      : class extends WebSocket {
          constructor(address: string, protocols?: string | string[]) {
            super(address, protocols, { origin });
          }
        };
  const client = createClient({
    url,
    webSocketImpl,
    lazy: false,
    retryAttempts: 0,
    onNonLazyError: () => {},
    ...(connectionParams !== undefined ? { connectionParams } : {}),
    on: {
      connected: () => onConnected(),
      closed: (event) => {
        const e = event as { code: number; reason: string };
        onClosed({ code: e.code, reason: String(e.reason) });
      },
    },
  });
  return { client, connected, closed };
}

export interface Outcome {
  values: Result[];
  /** The operation's `error` message (GraphQL errors), or the close event that ended it. */
  errors: { message: string; extensions?: Record<string, unknown> }[] | null;
  closed: Closed | null;
}

export interface Running {
  /** Resolves with everything received once the operation completes or errors. */
  done: Promise<Outcome>;
  /** Resolves once `n` results arrived. */
  received(n: number): Promise<void>;
  values: Result[];
  /** Completes the operation from the client side. */
  stop(): void;
}

/** Runs one operation on `client`, collecting its results. */
export function run(client: Client, query: string, variables?: Record<string, unknown>): Running {
  const values: Result[] = [];
  const waiters: { n: number; resolve: () => void }[] = [];
  let stop!: () => void;
  const done = new Promise<Outcome>((resolve) => {
    stop = client.subscribe(
      { query, ...(variables ? { variables } : {}) },
      {
        next: (value) => {
          values.push(value);
          for (const w of waiters.filter((w) => values.length >= w.n)) w.resolve();
        },
        error: (error) => {
          if (Array.isArray(error)) resolve({ values, errors: error as Outcome['errors'], closed: null });
          else if (error && typeof error === 'object' && 'code' in error) {
            const e = error as { code: number; reason: string };
            resolve({ values, errors: null, closed: { code: e.code, reason: String(e.reason) } });
          } else resolve({ values, errors: [{ message: String(error) }], closed: null });
        },
        complete: () => resolve({ values, errors: null, closed: null }),
      },
    );
  });
  return {
    done,
    values,
    stop: () => stop(),
    received: (n) => (values.length >= n ? Promise.resolve() : new Promise((resolve) => waiters.push({ n, resolve }))),
  };
}

/** The status of an upgrade to `url` the server refused (`unexpected-response`), or 101 when it was accepted. */
export function upgradeStatus(url: string, headers: Record<string, string>, origin?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, 'graphql-transport-ws', { headers, ...(origin !== undefined ? { origin } : {}) });
    socket.on('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    socket.on('open', () => {
      socket.close();
      resolve({ status: 101, body: '' });
    });
    socket.on('error', (err) => {
      // After `unexpected-response` ws reports the aborted handshake too; the status is what matters.
      if (!/Unexpected server response/.test(err.message)) reject(err);
    });
  });
}

export interface SseEvent {
  event: string;
  data: string;
  /** The event's `id:` line, when it had one (change streams: the event's position). */
  id?: string;
}

export interface SseStream {
  status: number;
  headers: Headers;
  /** Events as they arrive (`id:`, `event:` and `data:` lines up to a blank line); ends with the response. */
  events: AsyncGenerator<SseEvent>;
  abort(): void;
}

/** A GraphQL request over SSE (`Accept: text/event-stream`), parsed event by event. */
export async function sse(url: string, body: Record<string, unknown>, headers: Record<string, string> = {}): Promise<SseStream> {
  const controller = new AbortController();
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream', ...headers },
    body: JSON.stringify(body),
    signal: controller.signal,
  });
  return { status: res.status, headers: res.headers, events: parseEvents(res), abort: () => controller.abort() };
}

async function* parseEvents(res: Response): AsyncGenerator<SseEvent> {
  if (!res.body) return;
  const decoder = new TextDecoder();
  let buffer = '';
  let event = '';
  let data: string[] = [];
  let id: string | undefined;
  try {
    for await (const chunk of res.body) {
      buffer += decoder.decode(chunk as Uint8Array, { stream: true });
      let newline: number;
      while ((newline = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, newline).replace(/\r$/, '');
        buffer = buffer.slice(newline + 1);
        if (line === '') {
          if (event !== '' || data.length > 0) yield { event: event || 'message', data: data.join('\n'), ...(id === undefined ? {} : { id }) };
          event = '';
          data = [];
          id = undefined;
        } else if (line.startsWith(':')) {
          // A comment (keep-alive).
        } else if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
        else if (line.startsWith('id:')) id = line.slice(3).replace(/^ /, '');
      }
    }
  } catch (err) {
    if (!(err instanceof Error && err.name === 'AbortError')) throw err;
  }
}

/** Reads events until `complete` (or the end of the response), parsing each `next` payload. */
export async function readAll(stream: SseStream): Promise<{ next: Record<string, unknown>[]; events: SseEvent[] }> {
  const next: Record<string, unknown>[] = [];
  const events: SseEvent[] = [];
  for await (const e of stream.events) {
    events.push(e);
    if (e.event === 'next') next.push(JSON.parse(e.data) as Record<string, unknown>);
    if (e.event === 'complete') break;
  }
  return { next, events };
}
