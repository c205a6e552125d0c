import { z } from 'zod';

// The config file's shape (docs/configuration.md). Input arrives as `unknown` and is
// validated here once; everything downstream works with the parsed types.

const ruleList = z.array(z.string().min(1, 'a rule cannot be empty')).min(1, 'give at least one rule');
const rulesOrPublic = z.union([z.literal('public'), ruleList]);
// A single rule may be written as a plain string; it is normalised to a list.
const oneOrMany = z.union([z.string().min(1).transform((s) => [s]), ruleList]);
const oneOrManyOrPublic = z.union([z.literal('public'), oneOrMany]);

/** pino's levels, most severe first; `silent` logs nothing. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

const presets = z.record(z.string(), z.string());

const tableSchema = z
  .object({
    select: oneOrManyOrPublic.optional(),
    insert: z
      .object({
        check: oneOrManyOrPublic,
        columns: z.array(z.string()).optional(),
        set: presets.optional(),
      })
      .strict()
      .optional(),
    update: z
      .object({
        filter: oneOrMany.optional(),
        check: oneOrMany.optional(),
        columns: z.array(z.string()).optional(),
        set: presets.optional(),
      })
      .strict()
      .optional(),
    delete: oneOrMany.optional(),
    relationships: z.record(z.string(), z.string()).optional(),
    // A view's key (a view has no PRIMARY KEY): the columns that identify its rows, which give it
    // `_by_pk` and let it have write rules (auto-updatable views). Must be unique; not checked.
    primaryKey: z.array(z.string()).min(1, 'list at least one column').optional(),
    // Columns a caller may read (Hasura's select permission columns); unlisted ones exist only for
    // rules and writes. Default: every column.
    selectColumns: z.array(z.string()).min(1, 'list at least one column').optional(),
    // At most this many rows of the table per list or aggregate (Hasura's select permission limit).
    selectLimit: z.number().int().positive().optional(),
    // Fields computed by SQL functions of the row (Hasura's computed fields): { "<field>": {
    // "function": "<name>", "session": true if its second argument takes the caller's claims as json }.
    computedFields: z
      .record(z.string(), z.object({ function: z.string(), session: z.boolean().default(false) }).strict())
      .optional(),
  })
  .strict();

export const configSchema = z
  .object({
    // Editors read the JSON Schema named here (rowgate.config.schema.json) for completion.
    $schema: z.string().optional(),
    database: z
      .object({
        url: z.string().nullable().default(null),
        schema: z.string().default('public'),
        // Connections of the live engine and the change feed, a pool apart from the queries' one,
        // so that however busy queries keep the query pool, live queries and change streams go on.
        livePoolSize: z.number().int().positive().default(4),
      })
      .strict()
      .prefault({}),
    auth: z
      .object({
        jwt: z
          .object({
            secret: z.string().nullable().default(null),
            algorithms: z.array(z.string()).default(['HS256']),
            senderClaim: z.string().default('sub'),
            issuer: z.string().nullable().default(null),
            audience: z.string().nullable().default(null),
            jwksFile: z.string().nullable().default(null),
            clockTolerance: z.number().int().min(0).default(0),
            // A claim holding an object of further claims (Hasura's "https://hasura.io/jwt/claims"):
            // merged over the top-level claims, `x-hasura-user-id` also readable as :user_id.
            claimsNamespace: z.string().nullable().default(null),
            // Refuse tokens without an `exp` claim: such a token, once leaked, is valid forever.
            // Set false only for an issuer that cannot set `exp` (`rowgate token` always does).
            requireExp: z.boolean().default(true),
          })
          .strict()
          .prefault({}),
        anonymous: z.boolean().default(false),
        adminSecret: z.string().nullable().default(null),
        // Other headers that carry the admin secret besides x-rowgate-admin-secret (["x-hasura-admin-secret"]).
        adminSecretHeaders: z.array(z.string()).default([]),
        allowedOrigins: z.array(z.string()).nullable().default(null),
      })
      .strict()
      .prefault({}),
    tables: z.record(z.string(), tableSchema),
    // SQL functions exposed as root query fields (Hasura's tracked functions): STABLE, returning
    // SETOF a listed table, whose rows the caller sees through that table's rules.
    functions: z.array(z.string()).default([]),
    // The claims (beyond the sender) tokens carry, as rules write them (`:org` → "org"): a rule
    // parameter outside this list is then an error, so a misspelt one cannot match nothing quietly.
    claims: z
      .array(z.string().min(1))
      .nullable()
      .default(null)
      .describe('Claim names rules may use as :name besides :sender; a rule parameter outside the list stops startup and check. Unset: every such parameter is allowed, and check and serve warn about each.'),
    limits: z
      .object({
        maxDepth: z.number().int().positive().default(10),
        maxRows: z.number().int().positive().default(1000),
        // Rows (nested ones included) one root field of a query may answer with.
        maxTotalRows: z.number().int().positive().default(50_000),
        // Every statement a caller triggers is cancelled after this long (0: never).
        statementTimeoutMs: z.number().int().min(0).default(10_000),
        // Distinct query shapes run as prepared statements per connection lifetime (0: none); see db/prepared.ts.
        preparedStatements: z.number().int().min(0).default(1000),
        maxSubscriptionsPerSocket: z.number().int().positive().default(100),
        // Queries and mutations one caller may have running at once (0: no limit); one more is
        // refused at once with LIMIT_EXCEEDED. A caller is a token's sender, an anonymous caller
        // its remote address; the admin secret is not limited. Subscriptions are not counted.
        perCallerConcurrency: z.number().int().min(0).default(4),
        // Subscribers evaluated by one statement of a multiplexed live query (1 = one per subscriber).
        subscribersPerStatement: z.number().int().positive().max(10_000).default(1000),
        // Largest accepted HTTP request body; larger ones get 413 before any parsing.
        maxBodyBytes: z.number().int().positive().default(1024 * 1024),
        // Bytes a WebSocket may have queued for its client; past this the client is too slow and
        // the socket is closed with 1013 ("try again later"), so one slow reader cannot grow memory.
        maxSocketBufferBytes: z.number().int().positive().default(4 * 1024 * 1024),
      })
      .strict()
      .prefault({}),
    changeLog: z
      .object({
        retentionHours: z.number().positive().default(24),
        capture: z
          .enum(['auto', 'wal', 'triggers'])
          .default('auto')
          .describe('How committed changes reach the change log: "wal" (logical decoding: a publication, a permanent replication slot; needs wal_level=logical and a role that may replicate), "triggers" (capture triggers on every captured table), or "auto" (the default: wal where the server has wal_level=logical and the role may replicate, else triggers).'),
      })
      .strict()
      .prefault({}),
    graphql: z
      .object({
        // "hasura": the root types are named query_root, mutation_root and subscription_root, as in
        // Hasura, for clients and codegen configs migrated from it; "standard": Query, Mutation, Subscription.
        rootTypeNames: z.enum(['standard', 'hasura']).default('standard'),
        // "hasura": extensions.code carries Hasura's error class (invalid-jwt, permission-error,
        // validation-failed, constraint-violation, unexpected) and rowgate's code is in rowgate_code.
        errorCodes: z.enum(['rowgate', 'hasura']).default('rowgate'),
      })
      .strict()
      .prefault({}),
    watch: z
      .object({
        catalogPollMs: z
          .number()
          .int()
          .min(100)
          .default(5_000)
          .describe('serve --watch without the DDL event trigger (the gateway\'s role is not a superuser): how often the catalog is read and compared, in milliseconds.'),
      })
      .strict()
      .prefault({}),
    metrics: z
      .object({
        enabled: z.boolean().default(true).describe('Serve Prometheus metrics at /metrics (prom-client text format).'),
        port: z
          .number()
          .int()
          .min(0)
          .max(65535)
          .nullable()
          .default(null)
          .describe('Serve /metrics on its own listener on this port (same host as the gateway), without credentials, and not on the main port. Unset: /metrics is on the main port and needs the admin secret or metrics.token.'),
        token: z
          .string()
          .min(16, 'use at least 16 characters')
          .nullable()
          .default(null)
          .describe('A bearer token (Authorization: Bearer <token>) a scraper may send for /metrics on the main port instead of the admin secret; env ROWGATE_METRICS_TOKEN.'),
      })
      .strict()
      .prefault({}),
    tracing: z
      .object({
        enabled: z
          .boolean()
          .default(false)
          .describe('OpenTelemetry spans for every GraphQL operation (@envelop/opentelemetry), sent to the globally registered tracer provider: register an SDK and exporter in the process (node --import).'),
      })
      .strict()
      .prefault({}),
    log: z
      .object({
        level: z.enum(LOG_LEVELS).default('info').describe('Level of the JSON log on stdout (pino): fatal, error, warn, info, debug, trace or silent; env LOG_LEVEL wins.'),
      })
      .strict()
      .prefault({}),
  })
  .strict();

export type Config = z.infer<typeof configSchema>;
export type TableConfig = z.infer<typeof tableSchema>;
export type RulesOrPublic = 'public' | string[];
