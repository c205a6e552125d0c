import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { pino, type DestinationStream, type Logger } from 'pino';
import type { LogLevel } from '../config/index.ts';

export type { Logger };

export const REQUEST_ID_HEADER = 'x-request-id';

/**
 * The gateway's runtime log: one JSON object per line (pino), on stdout unless `destination` is
 * given (tests pass a stream and read the lines back). CLI output for users stays plain text.
 */
export function createLogger(level: LogLevel, destination?: DestinationStream): Logger {
  return pino({ name: 'rowgate', level, timestamp: pino.stdTimeFunctions.isoTime }, destination);
}

/** A client's or proxy's id is kept when it is short and plain, so it cannot forge log structure or bloat lines. */
const ACCEPTED_REQUEST_ID = /^[\w.:@/+=-]{1,128}$/;

/** The request's id: its `x-request-id` when acceptable, else a new UUID. */
export function requestId(req: IncomingMessage): string {
  const incoming = req.headers[REQUEST_ID_HEADER];
  return typeof incoming === 'string' && ACCEPTED_REQUEST_ID.test(incoming) ? incoming : randomUUID();
}
