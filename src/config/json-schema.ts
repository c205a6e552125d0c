import { z } from 'zod';
import { configSchema } from './schema.ts';

/**
 * The config file's JSON Schema, generated from the zod schema that validates it, so editors
 * complete and check `rowgate.config.json` against exactly what startup accepts. Input side: a
 * rule may be a string or a list, defaults may be left out.
 */
export function configJsonSchema(): Record<string, unknown> {
  return { ...z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }), title: 'rowgate config' };
}
