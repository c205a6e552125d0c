import { readFile } from 'node:fs/promises';
import { resolve, extname } from 'node:path';
import { pathToFileURL } from 'node:url';
import { configSchema, LOG_LEVELS, type Config, type LogLevel } from './schema.ts';

export const DEFAULT_CONFIG_PATH = 'rowgate.config.json';

export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
}

/** Validates a config object (already read from wherever) and applies environment overrides. */
export function parseConfig(input: unknown, env: NodeJS.ProcessEnv = process.env, source = 'config'): Config {
  const parsed = configSchema.safeParse(input);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => `  ${issue.path.join('.') || '(root)'}: ${issue.message}`);
    throw new ConfigError(`${source} is not a valid rowgate config:\n${lines.join('\n')}`);
  }
  const config = parsed.data;
  // Environment wins over the file so secrets need not be written into it.
  if (env['DATABASE_URL']) config.database.url = env['DATABASE_URL'];
  if (env['ROWGATE_JWT_SECRET']) config.auth.jwt.secret = env['ROWGATE_JWT_SECRET'];
  if (env['ROWGATE_ADMIN_SECRET']) config.auth.adminSecret = env['ROWGATE_ADMIN_SECRET'];
  if (env['ROWGATE_METRICS_TOKEN']) config.metrics.token = env['ROWGATE_METRICS_TOKEN'];
  const level = env['LOG_LEVEL'];
  if (level) {
    if (!(LOG_LEVELS as readonly string[]).includes(level)) throw new ConfigError(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, not "${level}"`);
    config.log.level = level as LogLevel;
  }
  return config;
}

/** Reads `rowgate.config.json` (or a `.js`/`.ts` module whose default export is the same object). */
export async function loadConfig(path = DEFAULT_CONFIG_PATH, env: NodeJS.ProcessEnv = process.env): Promise<Config> {
  const file = resolve(path);
  let raw: unknown;
  try {
    if (['.js', '.mjs', '.ts', '.mts'].includes(extname(file))) {
      const mod = (await import(pathToFileURL(file).href)) as { default?: unknown };
      raw = mod.default;
    } else {
      raw = JSON.parse(await readFile(file, 'utf8'));
    }
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new ConfigError(`cannot read config ${path}: ${reason}`);
  }
  return parseConfig(raw, env, path);
}
