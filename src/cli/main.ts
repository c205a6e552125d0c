import { parseArgs } from 'node:util';
import { ConfigError, DEFAULT_CONFIG_PATH } from '../config/index.ts';
import { RuleConfigError } from '../rules/index.ts';
import { capture } from './capture.ts';
import { demo } from './demo.ts';
import { check } from './check.ts';
import { explain } from './explain.ts';
import { policies } from './policies.ts';
import { printSdl, printToken, resolvePort, serve } from '../server/serve.ts';

const USAGE = `usage: rowgate <command> [options]

  serve    [--config F] [--port N] [--host H]             serve /graphql, /healthz and /readyz (port: --port, PORT, else 4000;
                                                          host 127.0.0.1 unless --host, e.g. 0.0.0.0 in a container)
  schema   [--config F]                                   print the GraphQL SDL
  token    --sender S [--claims JSON] [--expires 1h] [--config F]
                                                          print a JWT signed with the configured secret (HS256)
  check    [--config F]                                   validate every rule against the database
  explain  --table T [--sender S] [--claims JSON] [--config F]
                                                          print T's compiled visibility and write checks
  demo     [--port N] [--host H]                          the demo (npm start): embedded PostgreSQL, demo data, tokens
  capture  [--drop] [--config F]                          install change capture (triggers and change log) on every
                                                          listed table and every table the rules read; --drop removes it
  policies [--apply | --drop] [--config F]                print (default), install (--apply, idempotent) or remove (--drop)
                                                          native PostgreSQL row-level security policies equivalent to the
                                                          rules; the caller is read from the rowgate.sender and
                                                          rowgate.claims settings
`;

type Command = (values: Record<string, string | boolean | undefined>) => Promise<number>;

const commands: Record<string, { options: Record<string, { type: 'string' | 'boolean' }>; run: Command }> = {
  serve: {
    options: { config: { type: 'string' }, port: { type: 'string' }, host: { type: 'string' } },
    run: (v) => {
      let port: number;
      try {
        port = resolvePort(str(v['port']));
      } catch (err) {
        throw new UsageError((err as Error).message);
      }
      const host = str(v['host']);
      return serve({ configPath: str(v['config']) ?? DEFAULT_CONFIG_PATH, port, ...(host !== undefined ? { host } : {}) });
    },
  },
  schema: {
    options: { config: { type: 'string' } },
    run: (v) => printSdl(str(v['config']) ?? DEFAULT_CONFIG_PATH),
  },
  token: {
    options: { config: { type: 'string' }, sender: { type: 'string' }, claims: { type: 'string' }, expires: { type: 'string' } },
    run: (v) => {
      const sender = str(v['sender']);
      if (!sender) throw new UsageError('token needs --sender S');
      return printToken(str(v['config']) ?? DEFAULT_CONFIG_PATH, sender, str(v['claims']), str(v['expires']));
    },
  },
  check: {
    options: { config: { type: 'string' } },
    run: (v) => check(str(v['config']) ?? DEFAULT_CONFIG_PATH),
  },
  explain: {
    options: { config: { type: 'string' }, table: { type: 'string' }, sender: { type: 'string' }, claims: { type: 'string' } },
    run: (v) => {
      const table = str(v['table']);
      if (!table) throw new UsageError('explain needs --table T');
      return explain(str(v['config']) ?? DEFAULT_CONFIG_PATH, table, str(v['sender']) ?? null, str(v['claims']));
    },
  },
  demo: {
    options: { port: { type: 'string' }, host: { type: 'string' } },
    run: (v) => demo(str(v['port']), str(v['host'])),
  },
  capture: {
    options: { config: { type: 'string' }, drop: { type: 'boolean' } },
    run: (v) => capture(str(v['config']) ?? DEFAULT_CONFIG_PATH, v['drop'] === true),
  },
  policies: {
    options: { config: { type: 'string' }, apply: { type: 'boolean' }, drop: { type: 'boolean' } },
    run: (v) => {
      if (v['apply'] === true && v['drop'] === true) throw new UsageError('policies takes --apply or --drop, not both');
      return policies(str(v['config']) ?? DEFAULT_CONFIG_PATH, v['apply'] === true ? 'apply' : v['drop'] === true ? 'drop' : 'print');
    },
  },
};

class UsageError extends Error {}

function str(v: string | boolean | undefined): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

/** Runs one CLI command; returns the exit code. Expected failures print a message, not a stack. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  const command = name ? commands[name] : undefined;
  if (!command) {
    process.stderr.write(name && name !== '--help' ? `unknown command "${name}"\n\n${USAGE}` : USAGE);
    return name && name !== '--help' ? 2 : 0;
  }
  try {
    const { values } = parseArgs({ args: rest, options: command.options, strict: true });
    return await command.run(values);
  } catch (err) {
    if (err instanceof RuleConfigError || err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      return 1;
    }
    if (err instanceof UsageError || (err as { code?: string } | undefined)?.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      process.stderr.write(`${(err as Error).message}\n\n${USAGE}`);
      return 2;
    }
    process.stderr.write(`rowgate: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}
