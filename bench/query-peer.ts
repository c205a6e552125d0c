/**
 * bench:query's peer: PostGraphile v5 (bench/peers-postgraphile.ts, amber preset) over the bench data
 * with the row-level security policies its documentation teaches, written by hand — not rowgate's
 * generated ones (bench:peers measures those). The caller's sender reaches PostgreSQL as the setting
 * `jwt.claims.sub` (`pgSettings`, set per transaction), and the policies read it with
 * `current_setting('jwt.claims.sub', true)`:
 *
 * - account: the caller's own row, or every row when the caller is in `admin` (an `EXISTS`);
 * - player: its account is visible (an `EXISTS` over account, whose policy applies inside it);
 * - grp: the caller has a membership in it;
 * - document: the caller wrote it, or has a membership with 'r' in its group (an `EXISTS`).
 *
 * membership's own rule (a writer sees the group's other memberships) would refer to membership from
 * its own policy, which PostgreSQL refuses as infinite recursion; the idiomatic way around it is a
 * SECURITY DEFINER function. The bench reads no membership through the API, so its policy is the
 * caller's own rows only. The peer connects as PEER_ROLE: no superuser, no BYPASSRLS.
 */
import type { Sql } from '../src/db/index.ts';

export const PEER_ROLE = 'rowgate_query_peer';
/** The setting PostGraphile's pgSettings carries the sender in. */
export const PEER_SETTING = 'jwt.claims.sub';

const me = `current_setting('${PEER_SETTING}', true)`;

export const PEER_POLICIES: Record<string, string> = {
  account: `identity = ${me} OR EXISTS (SELECT 1 FROM admin WHERE admin.identity = ${me})`,
  player: 'EXISTS (SELECT 1 FROM account a WHERE a.id = player.id)',
  grp: `EXISTS (SELECT 1 FROM membership m WHERE m.grp_id = grp.id AND m.member = ${me})`,
  membership: `member = ${me}`,
  document: `author = ${me} OR EXISTS (SELECT 1 FROM membership m WHERE m.grp_id = document.grp_id AND m.member = ${me} AND m.perms LIKE '%r%')`,
};

/** The peer's role (password = its name) with read access, and the policies above; returns the undo. */
export async function installPeer(sql: Sql): Promise<() => Promise<void>> {
  await sql.unsafe(`DROP ROLE IF EXISTS ${PEER_ROLE}`).catch(() => {});
  await sql.unsafe(`CREATE ROLE ${PEER_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD '${PEER_ROLE}'`);
  await sql.unsafe(`GRANT USAGE ON SCHEMA public TO ${PEER_ROLE}; GRANT SELECT ON ALL TABLES IN SCHEMA public TO ${PEER_ROLE}`);
  for (const [table, using] of Object.entries(PEER_POLICIES)) {
    await sql.unsafe(`ALTER TABLE ${table} ENABLE ROW LEVEL SECURITY; CREATE POLICY peer_select ON ${table} FOR SELECT TO ${PEER_ROLE} USING (${using})`);
  }
  return async () => {
    for (const table of Object.keys(PEER_POLICIES)) await sql.unsafe(`DROP POLICY IF EXISTS peer_select ON ${table}; ALTER TABLE ${table} DISABLE ROW LEVEL SECURITY`);
    await sql.unsafe(`DROP OWNED BY ${PEER_ROLE}; DROP ROLE IF EXISTS ${PEER_ROLE}`);
  };
}

/** PostGraphile's equivalent of BENCH_QUERY (amber preset naming). */
export const PEER_QUERY = `{
  allAccounts { nodes { rowId name playerByRowId { level score } } }
  allDocuments(first: 20, orderBy: ROW_ID_DESC) { nodes { rowId title grpByGrpId { name } } }
}`;

/** The simple one-table query, for rowgate and for PostGraphile. */
export const SIMPLE_QUERY = '{ account { id name } }';
export const PEER_SIMPLE_QUERY = '{ allAccounts { nodes { rowId name } } }';

export interface BenchAnswer {
  data: {
    account: { id: number; name: string; players?: { level: number; score: string }[] }[];
    document?: { id: number; title: string; grp: { name: string } | null }[];
  };
}

/** A PostGraphile answer (to PEER_QUERY or PEER_SIMPLE_QUERY) in rowgate's shape. */
export function fromPeer(body: unknown): BenchAnswer {
  const d = (body as { data?: Record<string, { nodes: Record<string, unknown>[] } | undefined> }).data;
  if (!d) return body as BenchAnswer;
  const account = d['allAccounts']!.nodes.map((a) => {
    const base = { id: Number(a['rowId']), name: String(a['name']) };
    if (!('playerByRowId' in a)) return base;
    const p = a['playerByRowId'] as { level: number; score: string } | null;
    return { ...base, players: p ? [{ level: p.level, score: p.score }] : [] };
  });
  const documents = d['allDocuments'];
  if (!documents) return { data: { account } };
  return { data: { account, document: documents.nodes.map((x) => ({ id: Number(x['rowId']), title: String(x['title']), grp: (x['grpByGrpId'] as { name: string } | null) ?? null })) } };
}
