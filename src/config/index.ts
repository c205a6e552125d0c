export { configSchema, LOG_LEVELS, type Config, type LogLevel, type TableConfig, type RulesOrPublic } from './schema.ts';
export { loadConfig, parseConfig, ConfigError, DEFAULT_CONFIG_PATH } from './load.ts';
export { configJsonSchema } from './json-schema.ts';
