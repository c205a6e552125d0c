/**
 * The floor's SQL: what a developer who knows the rules would write by hand for
 *
 *   { account { id name players { level score } }
 *     document(limit: 20, order_by: {id: desc}) { id title grp { name } } }
 *
 * with the demo config's visibility, simplified by hand where it is provably the same:
 * - account:  identity = $1 OR the caller is an admin
 * - player:   its account is visible; under a visible account that is just `p.id = a.id`
 * - grp:      the caller can see one of its memberships, i.e. is a member (a membership seen through
 *             the "writer sees the group's memberships" rule implies the writer's own one)
 * - document: author = $1 OR the caller has a membership with 'r' in its group
 * One statement answers both root fields; the JSON text is built in PostgreSQL and sent as is.
 * `$1` is the sender, `$2` the row cap the gateway applies when there is no `limit` (limits.maxRows).
 */
export const FLOOR_SQL = `
SELECT json_build_object('data', json_build_object(
  'account', (
    SELECT coalesce(json_agg(json_build_object(
      'id', a.id,
      'name', a.name,
      'players', (
        SELECT coalesce(json_agg(json_build_object('level', p.level, 'score', p.score::text)), '[]'::json)
        FROM player p WHERE p.id = a.id)
    )), '[]'::json)
    FROM (
      SELECT * FROM account a
      WHERE a.identity = $1 OR EXISTS (SELECT 1 FROM admin WHERE admin.identity = $1)
      LIMIT $2
    ) a),
  'document', (
    SELECT coalesce(json_agg(json_build_object(
      'id', d.id,
      'title', d.title,
      'grp', (
        SELECT json_build_object('name', g.name) FROM grp g
        WHERE g.id = d.grp_id AND EXISTS (SELECT 1 FROM membership m WHERE m.grp_id = g.id AND m.member = $1))
    ) ORDER BY d.id DESC), '[]'::json)
    FROM (
      SELECT * FROM document d
      WHERE d.author = $1
         OR EXISTS (SELECT 1 FROM membership m WHERE m.grp_id = d.grp_id AND m.member = $1 AND m.perms LIKE '%r%')
      ORDER BY d.id DESC
      LIMIT 20
    ) d)
))::text AS body`;

/** The GraphQL query both servers answer (the floor ignores the text; it always answers this one). */
export const BENCH_QUERY = `{
  account { id name players { level score } }
  document(limit: 20, order_by: {id: desc}) { id title grp { name } }
}`;

/**
 * The same answer, with each table's OR of rules written as a UNION of its branches, so that every
 * branch can use its own index (`identity`, `author`, `membership.member`) instead of one scan that
 * tests the OR on every row. The admin branch does not depend on the row: PostgreSQL evaluates it once
 * (a One-Time Filter) and skips the branch for a normal caller. Not the floor the target is measured
 * against (that one mirrors the rules as they are written); it shows what the database could do.
 */
export const TUNED_FLOOR_SQL = `
SELECT json_build_object('data', json_build_object(
  'account', (
    SELECT coalesce(json_agg(json_build_object(
      'id', a.id,
      'name', a.name,
      'players', (
        SELECT coalesce(json_agg(json_build_object('level', p.level, 'score', p.score::text)), '[]'::json)
        FROM player p WHERE p.id = a.id)
    )), '[]'::json)
    FROM (
      SELECT * FROM (
        SELECT * FROM account a WHERE a.identity = $1
        UNION
        SELECT * FROM account a WHERE EXISTS (SELECT 1 FROM admin WHERE admin.identity = $1)
      ) a
      LIMIT $2
    ) a),
  'document', (
    SELECT coalesce(json_agg(json_build_object(
      'id', d.id,
      'title', d.title,
      'grp', (
        SELECT json_build_object('name', g.name) FROM grp g
        WHERE g.id = d.grp_id AND EXISTS (SELECT 1 FROM membership m WHERE m.grp_id = g.id AND m.member = $1))
    ) ORDER BY d.id DESC), '[]'::json)
    FROM (
      SELECT * FROM document d
      WHERE d.id IN (
        SELECT id FROM document WHERE author = $1
        UNION ALL
        SELECT d2.id FROM membership m JOIN document d2 ON d2.grp_id = m.grp_id WHERE m.member = $1 AND m.perms LIKE '%r%'
      )
      ORDER BY d.id DESC
      LIMIT 20
    ) d)
))::text AS body`;
