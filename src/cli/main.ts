import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ConfigError, DEFAULT_CONFIG_PATH } from '../config/index.ts';
import { RuleConfigError } from '../rules/index.ts';
import { capture } from './capture.ts';
import { demo } from './demo.ts';
import { check } from './check.ts';
import { explain } from './explain.ts';
import { init } from './init.ts';
import { policies } from './policies.ts';
import { printSdl, printToken, resolvePort, serve } from '../server/serve.ts';

/** The --config line of a command's options, aligned with its other options. */
const configOption = (width = 13) => `  ${'--config F'.padEnd(width)}the config file (default rowgate.config.json; a .js/.ts module may default-export it)`;

type Values = Record<string, string | boolean | undefined>;

interface CommandSpec {
  /** One line for the list of commands. */
  summary: string;
  /** `rowgate <command> --help`. */
  usage: string;
  options: Record<string, { type: 'string' | 'boolean' }>;
  run: (values: Values) => Promise<number>;
}

const commands: Record<string, CommandSpec> = {
  serve: {
    summary: 'serve /graphql, /healthz and /readyz',
    usage: `usage: rowgate serve [--config F] [--port N] [--host H] [--watch]

Checks every rule, installs change capture, then serves /graphql (HTTP, SSE, graphql-ws), /healthz
and /readyz until SIGINT or SIGTERM. Warns when the config can authenticate nobody. SIGHUP reloads
the config's tables and functions and the catalog without dropping sockets; a reload that fails
(an invalid rule) is logged and the previous schema stays.
${configOption()}
  --port N     the port: --port, else PORT, else 4000 (0: any free port)
  --host H     the address to listen on (default 127.0.0.1; 0.0.0.0 in a container)
  --watch      also reload when the config file changes and after DDL (an event trigger as a
               superuser, else the catalog compared every watch.catalogPollMs, 5 s)`,
    options: { config: { type: 'string' }, port: { type: 'string' }, host: { type: 'string' }, watch: { type: 'boolean' } },
    run: (v) => {
      let port: number;
      try {
        port = resolvePort(str(v['port']));
      } catch (err) {
        throw new UsageError((err as Error).message);
      }
      const host = str(v['host']);
      return serve({ configPath: configOf(v), port, watch: v['watch'] === true, ...(host !== undefined ? { host } : {}) });
    },
  },
  schema: {
    summary: 'print the GraphQL SDL serve exposes (for codegen)',
    usage: `usage: rowgate schema [--config F]

Prints the SDL of the schema serve exposes, subscriptions included, for codegen.
${configOption()}`,
    options: { config: { type: 'string' } },
    run: (v) => printSdl(configOf(v)),
  },
  token: {
    summary: 'print a JWT signed with the configured secret (HS256)',
    usage: `usage: rowgate token --sender S [--claims JSON] [--expires 1h] [--config F]

Prints a JWT for S signed with auth.jwt.secret (HS256). Needs no database.
  --sender S      the sender (the auth.jwt.senderClaim claim, default sub)
  --claims JSON   more claims, a JSON object, e.g. '{"org":"x"}'
  --expires T     lifetime: seconds, or 30m, 1h, 7d
${configOption(16)}`,
    options: { config: { type: 'string' }, sender: { type: 'string' }, claims: { type: 'string' }, expires: { type: 'string' } },
    run: (v) => {
      const sender = str(v['sender']);
      if (!sender) throw new UsageError('token needs --sender S');
      return printToken(configOf(v), sender, str(v['claims']), str(v['expires']));
    },
  },
  check: {
    summary: 'validate every rule against the database',
    usage: `usage: rowgate check [--config F]

Validates every rule against the database's catalog: one line per table and exit 0, or every
problem with its position and exit 1.
${configOption()}`,
    options: { config: { type: 'string' } },
    run: (v) => check(configOf(v)),
  },
  explain: {
    summary: "print a table's compiled visibility and write checks",
    usage: `usage: rowgate explain --table T [--sender S] [--claims JSON] [--config F]

Prints T's compiled visibility and write checks as SQL with $n placeholders, the bound values apart.
  --table T       a listed table
  --sender S      the caller's sender (default: none, bound as null)
  --claims JSON   the caller's claims, a JSON object
${configOption(16)}`,
    options: { config: { type: 'string' }, table: { type: 'string' }, sender: { type: 'string' }, claims: { type: 'string' } },
    run: (v) => {
      const table = str(v['table']);
      if (!table) throw new UsageError('explain needs --table T');
      return explain(configOf(v), table, str(v['sender']) ?? null, str(v['claims']));
    },
  },
  init: {
    summary: 'write a config for the database at DATABASE_URL, every table private until you write its rules',
    usage: `usage: rowgate init [--config F] [--schema S] [--force]

Reads the database at DATABASE_URL and writes a config listing every table and view of the schema,
each private ("SELECT * FROM t WHERE false") until you write its rules, with its relationships named
as rowgate names them (rename them in place) and development secrets. Never replaces a file unless
--force is given.
${configOption()}
  --schema S   the schema to read (default public)
  --force      replace the file if it exists`,
    options: { config: { type: 'string' }, schema: { type: 'string' }, force: { type: 'boolean' } },
    run: (v) => init(configOf(v), str(v['schema']) ?? 'public', v['force'] === true),
  },
  demo: {
    summary: 'the demo (npm start): embedded PostgreSQL, demo data, tokens',
    usage: `usage: rowgate demo [--port N] [--host H]

The demo (npm start): the embedded PostgreSQL in ./.rowgate/pgdata (or DATABASE_URL), the demo
tables and data, the gateway, and tokens, the admin secret and the DATABASE_URL to try it with.
  --port N     the port: --port, else PORT, else 4000
  --host H     the address to listen on (default 127.0.0.1)`,
    options: { port: { type: 'string' }, host: { type: 'string' } },
    run: (v) => demo(str(v['port']), str(v['host'])),
  },
  capture: {
    summary: 'install (or --drop) change capture',
    usage: `usage: rowgate capture [--drop | --status] [--config F]

Installs change capture on every listed table and every table the rules read; serve does this too.
changeLog.capture chooses how: WAL (a publication and a permanent replication slot), triggers, or
auto (the default: WAL where wal_level = logical and the role may replicate, else triggers).
  --drop       remove it instead: triggers, slot, publication, the change log (works for a config
               whose rules no longer load)
  --status     print the capture in use, the slot, its confirmed position and the WAL it retains
${configOption()}`,
    options: { config: { type: 'string' }, drop: { type: 'boolean' }, status: { type: 'boolean' } },
    run: (v) => capture(configOf(v), v['drop'] === true ? 'drop' : v['status'] === true ? 'status' : 'install'),
  },
  policies: {
    summary: 'print, --apply or --drop native PostgreSQL row-level security policies',
    usage: `usage: rowgate policies [--apply | --drop] [--config F]

Prints (default), installs (--apply, idempotent) or removes (--drop) native PostgreSQL row-level
security policies equivalent to the rules; the caller is read from the rowgate.sender and
rowgate.claims settings.
${configOption()}`,
    options: { config: { type: 'string' }, apply: { type: 'boolean' }, drop: { type: 'boolean' } },
    run: (v) => {
      if (v['apply'] === true && v['drop'] === true) throw new UsageError('policies takes --apply or --drop, not both');
      return policies(configOf(v), v['apply'] === true ? 'apply' : v['drop'] === true ? 'drop' : 'print');
    },
  },
};

const USAGE = `usage: rowgate <command> [options]

${Object.entries(commands)
  .map(([name, c]) => `  ${name.padEnd(10)}${c.summary}`)
  .join('\n')}

rowgate <command> --help (or -h, or rowgate help <command>) prints a command's options;
rowgate --version prints the version. Without DATABASE_URL or database.url, commands use the
embedded PostgreSQL in ./.rowgate/pgdata.
`;

function version(): string {
  const pkg = JSON.parse(readFileSync(fileURLToPath(new URL('../../package.json', import.meta.url)), 'utf8')) as { version: string };
  return pkg.version;
}

function configOf(v: Values): string {
  return str(v['config']) ?? DEFAULT_CONFIG_PATH;
}

class UsageError extends Error {}

function str(v: string | boolean | undefined): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

/** Runs one CLI command; returns the exit code. Expected failures print a message, not a stack. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  // Asked-for help and the version go to stdout with exit 0; usage errors to stderr with exit 2.
  if (name === '--help' || name === '-h' || (name === 'help' && rest.length === 0)) return out(USAGE);
  if (name === '--version') return out(`${version()}\n`);
  if (name === 'help') {
    const topic = commands[rest[0]!];
    if (!topic) return usageError(`unknown command "${rest[0]}"`, USAGE);
    return out(`${topic.usage}\n`);
  }
  const command = name ? commands[name] : undefined;
  if (!command) return usageError(name ? `unknown command "${name}"` : 'no command given', USAGE);
  try {
    const { values } = parseArgs({ args: rest, options: { ...command.options, help: { type: 'boolean', short: 'h' } }, strict: true });
    if (values['help'] === true) return out(`${command.usage}\n`);
    return await command.run(values);
  } catch (err) {
    if (err instanceof RuleConfigError || err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      return 1;
    }
    const code = (err as { code?: string } | undefined)?.code;
    if (err instanceof UsageError || code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' || code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' || code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
      return usageError((err as Error).message, command.usage);
    }
    process.stderr.write(`rowgate: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

function out(text: string): number {
  process.stdout.write(text);
  return 0;
}

function usageError(message: string, usage: string): number {
  process.stderr.write(`${message}\n\n${usage}${usage.endsWith('\n') ? '' : '\n'}`);
  return 2;
}
