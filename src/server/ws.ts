import type { IncomingMessage } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { getOperationAST, GraphQLError, type ExecutionArgs, type FormattedExecutionResult, type GraphQLFormattedError } from 'graphql';
import { CloseCode, handleProtocols, makeServer, type ExecutionResult, type OperationResult, type WebSocket as ProtocolSocket } from 'graphql-ws';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import type { Authenticator, Session } from './auth.ts';
import type { Yoga } from './http.ts';
import { INTERNAL_ERROR_MESSAGE, type InternalErrorLogger } from './plugins.ts';
import { errorCodes } from './request-record.ts';

/**
 * The graphql-ws transport (`graphql-transport-ws` subprotocol) on the gateway's node:http server.
 * graphql-ws's protocol core (`makeServer`) does the message handling; this file is the `ws`
 * adapter around it (after graphql-ws's own `use/ws`, with our close codes and logging) plus what
 * rowgate adds: the Origin check before the handshake, auth at `connection_init`, closing at the
 * token's expiry, the per-socket subscription limit, and running every operation through
 * `yoga.getEnveloped` so that limits, error codes and masking are the ones HTTP uses.
 */

/** Close codes this transport uses besides graphql-ws's own (4400, 4401, 4406, 4408, 4409, 4429, 4500). */
export const WsCloseCode = {
  /** No valid credentials at `connection_init`, or the token expired while the socket was open. */
  Forbidden: CloseCode.Forbidden,
  /** Something broke on the server; the reason says only "Internal server error". */
  InternalServerError: CloseCode.InternalServerError,
  /** The gateway is shutting down (RFC 6455 "going away"). */
  GoingAway: 1001,
  /** The client reads too slowly: its outgoing buffer passed `limits.maxSocketBufferBytes` (RFC 6455 "try again later"). */
  TryAgainLater: 1013,
} as const;

/** What the transport reports when it drops a socket whose client does not read. */
export interface SlowSocket {
  /** Bytes queued for the socket when it was closed (`ws.bufferedAmount`). */
  bufferedAmount: number;
  /** The cap it passed (`limits.maxSocketBufferBytes`). */
  limit: number;
}

export interface WebSocketTransportOptions {
  yoga: Yoga;
  authenticator: Authenticator;
  /** `auth.allowedOrigins` as it is now (a reload may change it): null allows every Origin. */
  allowedOrigins: () => string[] | null;
  /** `limits.maxSubscriptionsPerSocket` as it is now. */
  maxSubscriptionsPerSocket: () => number;
  /** Largest message a client may send (bytes); larger ones close the socket with 1009. */
  maxPayloadBytes: number;
  /** yoga's `maskError`, applied to errors that did not pass through yoga's execution. */
  maskError: (error: unknown, message: string) => Error;
  logInternalError: InternalErrorLogger;
  /** The path sockets are accepted on; other paths get 404. */
  path: string;
  /** Server pings this often and drops a socket whose pong does not come back within as long (ms). */
  keepAliveMs?: number;
  /** How long a socket may stay open without `connection_init` (ms); then graphql-ws closes it with 4408. */
  connectionInitWaitTimeoutMs?: number;
  /**
   * `limits.maxSocketBufferBytes` as it is now: a socket whose unsent bytes pass this is closed
   * with 1013 (and cut after `SLOW_CLOSE_GRACE_MS` if its client does not take the close frame either).
   */
  maxBufferedBytes?: () => number;
  /** Told about every socket closed for reading too slowly. */
  onSlowSocket: (info: SlowSocket) => void;
  /** Told each operation's type (`unknown` when it did not parse) and the error codes sent, for the metrics. */
  observe: WebSocketObserver;
  /** Rewrites each outgoing result's errors in place (`graphql.errorCodes: "hasura"`). */
  mapErrors?: (result: { errors?: readonly GraphQLFormattedError[] }) => void;
}

export interface WebSocketObserver {
  operation(type: string): void;
  errors(codes: readonly string[]): void;
}

export interface WebSocketStats {
  /** Open sockets (handshake done, not closed yet), acknowledged or not. */
  sockets: number;
  /** Subscription operations running on those sockets. */
  subscriptions: number;
}

export interface WebSocketTransport {
  /** node:http's `upgrade` listener. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  stats(): WebSocketStats;
  /** Refuses further upgrades, closes every socket with 1001 and waits for them (terminating after `graceMs`). */
  close(graceMs: number): Promise<void>;
}

/**
 * Everything the transport keeps for one socket, in one object: it is graphql-ws's socket (which
 * calls `send`, `close` and `onMessage` as methods) and its `ctx.extra`. The socket's listeners,
 * graphql-ws's socket methods and the keep-alive are functions shared by all sockets (they find
 * the connection through `this` or `connections`), so an idle socket owns no closure. Closures,
 * timers and `once` wrappers per socket, and the upgrade request (headers included) the context
 * kept alive, were 3.7 of the 8.3 KB of heap per socket (3,000 bench:fanout sockets); under tsx
 * every named closure also carries its own property dictionary (~0.25 KB, esbuild's keepNames).
 */
interface Connection extends ProtocolSocket {
  readonly socket: WebSocket;
  session: Session | null;
  /** The client's address, as the upgrade request came: anonymous callers are limited by it (concurrency.ts). */
  readonly remoteAddress: string | undefined;
  /** The operations graphql-ws is running (from their `subscribe` message to the end of its handler), by id. */
  readonly operations: Map<string, Operation>;
  /** How many of them count against limits.maxSubscriptionsPerSocket. */
  subscriptions: number;
  /** graphql-ws's message handler, set by `onMessage`. */
  handle: ((data: string) => Promise<void>) | null;
  /** graphql-ws's close handler, returned by `opened`. */
  closed: ((code: number, reason: string) => Promise<void>) | null;
  /** Closes the socket when the token expires. */
  expiry: NodeJS.Timeout | null;
  /** A keep-alive ping went out and its pong has not come back yet. */
  awaitingPong: boolean;
}

/**
 * One `subscribe` message as graphql-ws runs it, until its handler has returned (the operation's
 * iterator, if it had one, is then finished). graphql-ws keys operations by the client's id alone:
 * a `subscribe` reusing an id right after its `complete`, while the first operation is still
 * starting, made two operations share one entry, so the older one was never ended, not even when
 * the socket closed (issue 15.5). Such a `subscribe` waits here until the older one is gone.
 */
interface Operation {
  /** A subscription operation onSubscribe accepted: it counts against the limit until its handler returns. */
  counted: boolean;
  /** The client sent `complete` for it: its id is free on the client's side. */
  completed: boolean;
  /** A `subscribe` with the same id sent after that `complete`, run once this operation is gone. */
  next: string | null;
}

type Enveloped = ReturnType<Yoga['getEnveloped']>;

const DEFAULT_KEEP_ALIVE_MS = 12_000;
const DEFAULT_CONNECTION_INIT_WAIT_MS = 3_000;
export const DEFAULT_MAX_BUFFERED_BYTES = 4 * 1024 * 1024;
/** How long a slow socket gets to take its close frame before it is cut. */
const SLOW_CLOSE_GRACE_MS = 1_000;
/** RFC 6455: a close frame's reason is at most 123 bytes. */
const MAX_CLOSE_REASON_BYTES = 123;
/** setTimeout fires at once for delays past 2^31 - 1 ms (~24.8 days). */
const MAX_TIMER_MS = 2 ** 31 - 1;

export function createWebSocketTransport(options: WebSocketTransportOptions): WebSocketTransport {
  const { yoga, authenticator, allowedOrigins, maxSubscriptionsPerSocket, maskError, logInternalError, onSlowSocket, observe } = options;
  const keepAliveMs = options.keepAliveMs ?? DEFAULT_KEEP_ALIVE_MS;
  const maxBufferedBytes = options.maxBufferedBytes ?? (() => DEFAULT_MAX_BUFFERED_BYTES);

  const wss = new WebSocketServer({
    noServer: true,
    // `connections` tracks the sockets (ws's own tracking would add a closure per socket).
    clientTracking: false,
    maxPayload: options.maxPayloadBytes,
    handleProtocols: (protocols) => handleProtocols(protocols),
  });
  /** Open sockets (handshake done, not closed yet). */
  const connections = new Map<WebSocket, Connection>();
  // The execution arguments built in onSubscribe, so execute/subscribe run the same envelop.
  const envelopes = new WeakMap<ExecutionArgs, Enveloped>();
  let subscriptionCount = 0;
  let closing: Promise<void> | null = null;
  // One interval for every socket rather than an interval and a pong timer per socket. Unref'd:
  // the open sockets keep the process alive, not their keep-alive.
  const keepAlive = keepAliveMs > 0 && Number.isFinite(keepAliveMs) ? setInterval(keepAliveRound, keepAliveMs).unref() : null;

  const server = makeServer<Record<string, unknown>, Connection>({
    connectionInitWaitTimeout: options.connectionInitWaitTimeoutMs ?? DEFAULT_CONNECTION_INIT_WAIT_MS,

    async onConnect(ctx) {
      const connection = ctx.extra;
      const socket = connection.socket;
      let session: Session;
      try {
        session = await authenticator.sessionFromConnectionParams(ctx.connectionParams);
      } catch (err) {
        if (!(err instanceof GraphQLError)) throw err;
        // graphql-ws would close with 4403 "Forbidden"; close first, with the reason, so the client knows what to fix.
        closeSocket(socket, WsCloseCode.Forbidden, err.message);
        return false;
      }
      // The client may have gone while the token was checked: arm nothing for a closed socket.
      if (socket.readyState !== socket.OPEN) return false;
      connection.session = session;
      if (session.expiresAt !== null) closeAtExpiry(connection);
      return true;
    },

    async onSubscribe(ctx, id, payload) {
      const connection = ctx.extra;
      const caller = connection.session?.caller;
      // graphql-ws refuses `subscribe` before the ack, and the ack needs a session.
      if (!caller) throw new Error('subscribe on a socket without a session');
      // No `req`: the context of an operation lives as long as the operation, and the upgrade
      // request (with its headers) would live as long as the socket; nothing reads it.
      const enveloped = yoga.getEnveloped({ socket: connection.socket, params: payload, caller, remoteAddress: connection.remoteAddress });

      let document;
      try {
        document = enveloped.parse(payload.query);
      } catch (err) {
        observe.operation('unknown');
        if (err instanceof GraphQLError) return [err];
        throw err;
      }
      const operation = getOperationAST(document, payload.operationName);
      observe.operation(operation?.operation ?? 'unknown');
      const errors = enveloped.validate(enveloped.schema, document);
      if (errors.length > 0) return errors;

      // Counted before the first await, so concurrent subscribe messages cannot both slip under
      // the limit, and until its handler returns (see settle), whatever ends it.
      if (operation?.operation === 'subscription') {
        const limit = maxSubscriptionsPerSocket();
        if (connection.subscriptions >= limit) {
          return [
            new GraphQLError(
              `this socket already runs ${limit} subscriptions (limits.maxSubscriptionsPerSocket); complete one first or open another connection`,
              { extensions: { code: 'LIMIT_EXCEEDED' } },
            ),
          ];
        }
        const running = connection.operations.get(id);
        if (!running) throw new Error(`subscribe ${id} reached graphql-ws without passing onSocketMessage`);
        running.counted = true;
        connection.subscriptions += 1;
        subscriptionCount += 1;
      }

      let contextValue;
      try {
        contextValue = await enveloped.contextFactory();
      } catch (err) {
        if (err instanceof GraphQLError) return [err];
        throw err;
      }
      const args: ExecutionArgs = {
        schema: enveloped.schema,
        document,
        operationName: payload.operationName ?? null,
        variableValues: payload.variables ?? null,
        contextValue,
        rootValue: undefined,
      };
      envelopes.set(args, enveloped);
      return args;
    },

    execute: (args) => envelopeOf(args).execute(args) as OperationResult,
    subscribe: (args) => envelopeOf(args).subscribe(args) as OperationResult,

    // Results from yoga's execute/subscribe are masked already; only the HTTP-only extension goes.
    onNext: (_ctx, _id, _payload, _args, result) => {
      const formatted = formatResult(result);
      // Metrics count rowgate's codes, before any Hasura mapping.
      if (formatted.errors) observe.errors(errorCodes(formatted.errors));
      options.mapErrors?.(formatted);
      return formatted;
    },
    // Errors from onSubscribe (parse, validation, limits) and from a stream that threw.
    onError: (_ctx, _id, _payload, errors) => {
      const formatted = errors.map((error) => formatError(maskError(error, INTERNAL_ERROR_MESSAGE)));
      observe.errors(errorCodes(formatted));
      options.mapErrors?.({ errors: formatted });
      return formatted;
    },
  });

  /**
   * Hands a message to graphql-ws. A `subscribe` becomes an Operation first, settled when its
   * handler returns: graphql-ws has then finished with it (its iterator returned, its entry gone).
   */
  function dispatch(connection: Connection, text: string, id: string | null): void {
    if (id === null) return void handle(connection, text);
    // Set before the handler runs: graphql-ws calls onSubscribe synchronously.
    const operation: Operation = { counted: false, completed: false, next: null };
    connection.operations.set(id, operation);
    void handle(connection, text).then(() => settle(connection, id, operation));
  }

  function handle(connection: Connection, text: string): Promise<void> {
    const socket = connection.socket;
    return connection.handle!(text).catch((err: unknown) => {
      logInternalError(err);
      closeSocket(socket, WsCloseCode.InternalServerError, INTERNAL_ERROR_MESSAGE);
    });
  }

  function settle(connection: Connection, id: string, operation: Operation): void {
    if (operation.counted) {
      connection.subscriptions -= 1;
      subscriptionCount -= 1;
    }
    if (connection.operations.get(id) !== operation) return;
    connection.operations.delete(id);
    // The socket closed meanwhile: onClose dropped what was waiting.
    if (operation.next !== null) dispatch(connection, operation.next, id);
  }

  /**
   * The envelope of arguments onSubscribe built, handed out once: graphql-ws keeps the arguments
   * for as long as the operation runs, and the envelope (its parse, validate and context closures
   * over the initial context) is needed only to start it.
   */
  function envelopeOf(args: ExecutionArgs): Enveloped {
    const enveloped = envelopes.get(args);
    if (!enveloped) throw new Error('execution arguments that onSubscribe did not build');
    envelopes.delete(args);
    return enveloped;
  }

  /** Closes the socket with 4403 when the token's `exp` (plus clock tolerance) passes; the close handler clears the timer. */
  function closeAtExpiry(connection: Connection): void {
    const left = connection.session!.expiresAt! - Date.now();
    if (left <= 0) {
      connection.expiry = null;
      closeSocket(connection.socket, WsCloseCode.Forbidden, 'token expired');
      return;
    }
    connection.expiry = setTimeout(closeAtExpiry, Math.min(left, MAX_TIMER_MS), connection);
  }

  /** Terminates each socket whose pong for the previous round's ping has not come, pings the others. */
  function keepAliveRound(): void {
    for (const connection of connections.values()) {
      const socket = connection.socket;
      if (connection.awaitingPong) socket.terminate();
      else if (socket.readyState === socket.OPEN) {
        connection.awaitingPong = true;
        socket.ping();
      }
    }
  }

  function onConnection(socket: WebSocket, req: IncomingMessage): void {
    const connection: Connection = {
      socket,
      session: null,
      remoteAddress: req.socket.remoteAddress,
      operations: new Map(),
      subscriptions: 0,
      handle: null,
      closed: null,
      expiry: null,
      awaitingPong: false,
      protocol: socket.protocol,
      send: sendMessage,
      close: closeConnection,
      onMessage: setMessageHandler,
    };
    connections.set(socket, connection);
    socket.on('close', onClose);
    if (closing) {
      closeSocket(socket, WsCloseCode.GoingAway, 'going away');
      return;
    }
    // Socket errors are the network's or the client's (bad frames, oversized messages): ws closes
    // the socket itself, with 1002/1009, and the close handler cleans up.
    socket.on('error', ignore);
    socket.on('pong', onPong);
    socket.on('message', onSocketMessage);
    connection.closed = server.opened(connection, connection);
  }

  // graphql-ws's socket methods, shared by every connection (`this` is the connection).

  /**
   * Not awaiting the write: a client that does not read would stall graphql-ws's loop, and its
   * results would pile up unbounded in the subscriptions' iterators instead. Queued bytes are
   * counted by ws (bufferedAmount) and capped here; write errors close the socket.
   */
  function sendMessage(this: Connection, data: string): void {
    const socket = this.socket;
    if (socket.readyState !== socket.OPEN) return;
    socket.send(data);
    if (socket.bufferedAmount > maxBufferedBytes()) closeSlow(socket);
  }

  function closeConnection(this: Connection, code?: number, reason?: string): void {
    closeSocket(this.socket, code ?? 1000, reason ?? '');
  }

  function setMessageHandler(this: Connection, handle: (data: string) => Promise<void>): void {
    this.handle = handle;
  }

  // ws's listeners, shared by every socket (`this` is the socket).

  /**
   * Keeps one operation per id inside graphql-ws (see Operation): a `subscribe` reusing the id of
   * an operation the client completed waits until that one is gone, and a `complete` for such a
   * waiting `subscribe` drops it (it never started). A `subscribe` for an id that runs and was not
   * completed goes on to graphql-ws, which closes the socket with 4409.
   */
  function onSocketMessage(this: WebSocket, data: RawData): void {
    const connection = connections.get(this);
    if (!connection?.handle) return;
    const text = String(data);
    const message = operationMessage(text);
    const running = message && connection.operations.get(message.id);
    if (!message || !running) return dispatch(connection, text, message?.type === 'subscribe' ? message.id : null);
    if (message.type === 'complete') {
      if (running.next !== null) running.next = null;
      else {
        running.completed = true;
        dispatch(connection, text, null);
      }
      return;
    }
    if (!running.completed) return dispatch(connection, text, null);
    if (running.next !== null) {
      closeSocket(this, CloseCode.SubscriberAlreadyExists, `Subscriber for ${message.id} already exists`);
      return;
    }
    running.next = text;
  }

  function onPong(this: WebSocket): void {
    const connection = connections.get(this);
    if (connection) connection.awaitingPong = false;
  }

  function onClose(this: WebSocket, code: number, reason: Buffer): void {
    const connection = connections.get(this);
    if (!connection) return;
    connections.delete(this);
    if (connection.expiry) clearTimeout(connection.expiry);
    // Nothing waiting starts any more.
    for (const operation of connection.operations.values()) operation.next = null;
    // Returns every running operation's iterator, and graphql-ws returns each still starting as
    // soon as it has one (its id is no longer known); each is then settled.
    connection.closed?.(code, reason.toString()).catch(logInternalError);
  }

  /** Closes a socket whose client does not keep up (1013), and cuts it if the close frame cannot get through either. */
  function closeSlow(socket: WebSocket): void {
    const bufferedAmount = socket.bufferedAmount;
    closeSocket(socket, WsCloseCode.TryAgainLater, 'try again later: the client reads too slowly (limits.maxSocketBufferBytes)');
    const cut = setTimeout(() => socket.terminate(), SLOW_CLOSE_GRACE_MS);
    socket.once('close', () => clearTimeout(cut));
    try {
      onSlowSocket({ bufferedAmount, limit: maxBufferedBytes() });
    } catch (err) {
      logInternalError(err);
    }
  }

  return {
    handleUpgrade(req, socket, head) {
      socket.on('error', ignore);
      const path = new URL(req.url ?? '/', 'http://localhost').pathname;
      if (path !== options.path) return refuse(socket, 404, `not found: ${path} (GraphQL over WebSocket is at ${options.path})`);
      if (closing) return refuse(socket, 503, 'the server is shutting down');
      // Browsers always send Origin on a WebSocket upgrade and let any page open one, with the
      // user's cookies: refusing unlisted Origins here is what stops cross-site WebSocket hijacking.
      const origin = req.headers.origin;
      const allowed = allowedOrigins();
      if (origin !== undefined && allowed !== null && !allowed.includes(origin)) {
        return refuse(socket, 403, 'this Origin is not allowed (auth.allowedOrigins)');
      }
      wss.handleUpgrade(req, socket, head, onConnection);
    },

    stats: () => ({ sockets: connections.size, subscriptions: subscriptionCount }),

    close: (graceMs) =>
      (closing ??= (async () => {
        if (keepAlive) clearInterval(keepAlive);
        const sockets = [...connections.keys()];
        await Promise.all(
          sockets.map(
            (socket) =>
              new Promise<void>((resolve) => {
                if (socket.readyState === socket.CLOSED) return resolve();
                const timer = setTimeout(() => socket.terminate(), graceMs);
                socket.once('close', () => {
                  clearTimeout(timer);
                  resolve();
                });
                closeSocket(socket, WsCloseCode.GoingAway, 'going away');
              }),
          ),
        );
        await new Promise<void>((resolve) => wss.close(() => resolve()));
      })()),
  };
}

/** The id of a `subscribe` or `complete` message; null for any other message (graphql-ws judges those). */
function operationMessage(text: string): { type: 'subscribe' | 'complete'; id: string } | null {
  let message: unknown;
  try {
    message = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof message !== 'object' || message === null) return null;
  const { type, id } = message as { type?: unknown; id?: unknown };
  return (type === 'subscribe' || type === 'complete') && typeof id === 'string' ? { type, id } : null;
}

/** For 'error' events that need no handling but must have a listener (an unhandled 'error' throws). */
function ignore(): void {}

/** Closes an open socket; a socket that is closing or closed already keeps its first code and reason. */
function closeSocket(socket: WebSocket, code: number, reason: string): void {
  if (socket.readyState === socket.CONNECTING) {
    socket.terminate();
    return;
  }
  if (socket.readyState !== socket.OPEN) return;
  socket.close(code, closeReason(reason));
}

/** A close reason that fits the 123 bytes RFC 6455 allows (ws throws on longer ones). */
export function closeReason(text: string): string {
  if (Buffer.byteLength(text) <= MAX_CLOSE_REASON_BYTES) return text;
  let cut = text;
  while (Buffer.byteLength(`${cut}…`) > MAX_CLOSE_REASON_BYTES) cut = cut.slice(0, -1);
  return `${cut}…`;
}

/** Answers an upgrade request with a plain HTTP error, before any WebSocket handshake. */
function refuse(socket: Duplex, status: number, message: string): void {
  const body = JSON.stringify({ errors: [{ message, extensions: { code: status === 403 ? 'FORBIDDEN' : status === 503 ? 'SERVICE_UNAVAILABLE' : 'NOT_FOUND' } }] });
  socket.once('finish', () => socket.destroy());
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\n` +
      'Connection: close\r\n' +
      'Content-Type: application/json; charset=utf-8\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      '\r\n' +
      body,
  );
}

/** `extensions.http` tells yoga which HTTP status to answer with; a WebSocket client has no use for it. */
function formatError(error: Error): GraphQLFormattedError {
  const json: GraphQLFormattedError = error instanceof GraphQLError ? error.toJSON() : { message: error.message };
  if (!json.extensions || !('http' in json.extensions)) return json;
  const { http: _http, ...extensions } = json.extensions;
  const { extensions: _extensions, ...rest } = json;
  return Object.keys(extensions).length > 0 ? { ...rest, extensions } : rest;
}

export function formatResult(result: ExecutionResult): FormattedExecutionResult {
  const formatted: FormattedExecutionResult = {};
  if ('data' in result) formatted.data = result.data ?? null;
  if (result.errors) formatted.errors = result.errors.map((error) => formatError(error));
  if (result.extensions) formatted.extensions = result.extensions;
  return formatted;
}
