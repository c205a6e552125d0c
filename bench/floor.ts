/**
 * The floor: the least a server can do to answer the bench query for a caller. node:http, the
 * same Bearer JWT verified with jose (HS256), one hand-written SQL statement through postgres.js,
 * the JSON text from PostgreSQL written out as it is. Run as a child process by bench/query.ts:
 *
 *   FLOOR_DATABASE_URL=… FLOOR_JWT_SECRET=… FLOOR_PORT=0 node --import tsx bench/floor.ts
 *
 * Prints `floor: listening <port>` once it accepts requests. FLOOR_PREPARE=0 sends the statement
 * unprepared (parsed and planned on every request, as the gateway's statements are);
 * FLOOR_VARIANT=tuned serves TUNED_FLOOR_SQL (each OR of rules as a UNION) instead.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { jwtVerify } from 'jose';
import postgres from 'postgres';
import { FLOOR_SQL, TUNED_FLOOR_SQL } from './floor-sql.ts';

const url = process.env['FLOOR_DATABASE_URL'];
const secret = process.env['FLOOR_JWT_SECRET'];
if (!url || !secret) throw new Error('FLOOR_DATABASE_URL and FLOOR_JWT_SECRET are required');
const maxRows = Number(process.env['FLOOR_MAX_ROWS'] ?? 1000);
const prepare = process.env['FLOOR_PREPARE'] !== '0';
const text = process.env['FLOOR_VARIANT'] === 'tuned' ? TUNED_FLOOR_SQL : FLOOR_SQL;
const key = new TextEncoder().encode(secret);
// The same pool settings as the gateway's connect(): 10 connections, JIT off.
const sql = postgres(url, { max: 10, onnotice: () => {}, connection: { jit: 'off' } });

function send(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (req.url !== '/graphql' || req.method !== 'POST') return send(res, 404, '{"error":"not found"}');
  // Read (and drop) the body, as a real endpoint must before answering.
  for await (const _chunk of req) void _chunk;
  const auth = req.headers['authorization'];
  const token = typeof auth === 'string' && auth.startsWith('Bearer ') ? auth.slice(7) : null;
  if (!token) return send(res, 401, '{"errors":[{"message":"no token"}]}');
  let sender: string;
  try {
    const { payload } = await jwtVerify(token, key, { algorithms: ['HS256'] });
    if (typeof payload.sub !== 'string' || payload.sub === '') throw new Error('no sub');
    sender = payload.sub;
  } catch {
    return send(res, 401, '{"errors":[{"message":"invalid token"}]}');
  }
  const [row] = await sql.unsafe<{ body: string }[]>(text, [sender, maxRows], { prepare });
  send(res, 200, row!.body);
}

const server = createServer((req, res) => {
  handle(req, res).catch((err: unknown) => {
    console.error(err);
    if (!res.headersSent) send(res, 500, '{"errors":[{"message":"Internal server error"}]}');
  });
});
server.listen(Number(process.env['FLOOR_PORT'] ?? 0), '127.0.0.1', () => {
  const address = server.address();
  console.log(`floor: listening ${typeof address === 'object' && address ? address.port : 0}`);
});
const stop = () => {
  server.close();
  server.closeAllConnections();
  void sql.end({ timeout: 2 }).finally(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
