import { fileURLToPath } from 'node:url';
import { resolvePort, serve } from '../server/serve.ts';
import { signToken } from '../server/token.ts';

const CONFIG = fileURLToPath(new URL('../../demo/rowgate.config.json', import.meta.url));
const SCHEMA = fileURLToPath(new URL('../../demo/schema.sql', import.meta.url));

export const DEFAULT_QUERY = `# rowgate demo. The Headers tab below holds alice's token; the terminal that ran
# \`npm start\` printed tokens for bob and carol (an admin) and the admin secret: paste one
# there to see what another caller sees.
{
  account { name players { level } }
  document { title author grp { name } }
}
`;

/**
 * `npm start`: the demo on a fresh machine. The embedded PostgreSQL (or DATABASE_URL), the demo
 * tables and data created on first run, the gateway on port 4000, and tokens to try it with.
 */
export function demo(port: string | undefined, host: string | undefined): Promise<number> {
  return serve({
    configPath: CONFIG,
    port: resolvePort(port),
    ...(host ? { host } : {}),
    prepare: async (db) => {
      const [row] = await db.sql<{ present: boolean }[]>`SELECT to_regclass('public.document') IS NOT NULL AS present`;
      if (!row?.present) await db.sql.file(SCHEMA);
    },
    // GraphiQL opens as alice, with a query that works and a comment saying where the others are.
    graphiql: async (config) => ({
      headers: JSON.stringify({ Authorization: `Bearer ${await signToken(config, { sender: 'alice', expires: '24h' })}` }, null, 2),
      defaultQuery: DEFAULT_QUERY,
    }),
    onListening: async (url, config, db) => {
      const token = (sender: string) => signToken(config, { sender, expires: '24h' });
      const [alice, bob, carol] = await Promise.all(['alice', 'bob', 'carol'].map(token));
      const query = JSON.stringify({ query: '{ account { name players { level } } document { title author } }' });
      console.log(`
rowgate demo: ${url}  (open it in a browser for GraphiQL)

tokens, valid 24 h (header "Authorization: Bearer <token>"):
  alice  ${alice}
  bob    ${bob}
  carol  ${carol}   (in the admin table: sees every account)
admin secret, bypasses every rule: header "x-rowgate-admin-secret: ${config.auth.adminSecret}"
${db.embedded ? `\ndatabase (psql, or other rowgate commands while this runs):\n  DATABASE_URL=${db.url}\n` : ''}
try:
  curl -s ${url} -H 'content-type: application/json' -H 'authorization: Bearer ${alice}' \\
    -d '${query}'
`);
    },
  });
}
