import { randomBytes } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { parseConfig } from '../config/index.ts';
import { connect, databaseAddress, readCatalog } from '../db/index.ts';
import { compileRules, loadParser } from '../rules/index.ts';
import { buildModel } from '../schema/model.ts';

/** The rule `init` writes for every table: valid, and matching no row until its owner writes one. */
const NOTHING = (table: string) => `SELECT * FROM ${table} WHERE false`;

/**
 * `rowgate init`: a config for an existing database (DATABASE_URL). Every table and view of the
 * schema is listed, private by default (a rule that matches no row, for the owner to replace), with
 * its relationships named as rowgate names them so they can be renamed in place, and development
 * secrets generated. The file is only written when it does not exist yet (or with --force).
 */
export async function init(path: string, schema: string, force: boolean, log: (line: string) => void = console.log): Promise<number> {
  const url = process.env['DATABASE_URL'];
  if (!url) throw new Error('init reads an existing database: set DATABASE_URL (postgres://user@host:port/db)');
  if (existsSync(path) && !force) throw new Error(`${path} exists; pass --force to replace it`);
  const sql = connect(url, { max: 1 });
  try {
    await loadParser();
    const catalog = await readCatalog(sql, schema);
    const names = [...catalog.tables.keys()].sort();
    const where = databaseAddress(url);
    if (names.length === 0) throw new Error(`schema "${schema}" of ${where} has no tables`);
    const tables = Object.fromEntries(names.map((t) => [t, { select: NOTHING(t) }]));
    const draft = parseConfig({ database: { schema }, tables }, {});
    const model = buildModel(draft, catalog, compileRules(draft, catalog));
    const withRelationships = Object.fromEntries(
      names.map((t) => {
        const rels = model.tables.get(t)?.relationships.map((r) => r.name) ?? [];
        return [t, { ...tables[t], ...(rels.length ? { relationships: Object.fromEntries(rels.map((r) => [r, r])) } : {}) }];
      }),
    );
    const config = {
      $schema: './node_modules/rowgate/rowgate.config.schema.json',
      database: { schema },
      auth: { jwt: { secret: randomBytes(32).toString('hex'), algorithms: ['HS256'] }, adminSecret: randomBytes(24).toString('hex') },
      tables: withRelationships,
    };
    writeFileSync(path, `${JSON.stringify(config, null, 2)}\n`);
    log(`rowgate: wrote ${path}: ${names.length} tables of ${where} schema "${schema}", each private ("WHERE false").
Next: replace each table's select with who may see its rows (SELECT * FROM t WHERE owner = :sender),
add insert/update/delete rules where callers write, rename relationships in place, and check with
  DATABASE_URL=… npx rowgate check
The secrets in the file are for development: in production set ROWGATE_JWT_SECRET and ROWGATE_ADMIN_SECRET.`);
    return 0;
  } finally {
    await sql.end({ timeout: 5 });
  }
}
