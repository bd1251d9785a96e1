import envSchema from 'env-schema'
import { Type, type Static } from 'typebox'

/**
 * The service's whole configuration, read from the environment (and `.env`) in exactly one place.
 * The type is derived from the schema, so the two can never disagree.
 */
export const EnvSchema = Type.Object({
  PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 3000, description: 'HTTP port' }),
  HOST: Type.String({ minLength: 1, default: '0.0.0.0', description: 'HTTP listen address' }),
  DATABASE_URL: Type.Optional(Type.String({
    pattern: '^postgres(ql)?://',
    description: 'PostgreSQL connection URL; unset starts an embedded PostgreSQL in PGDATA_DIR',
  })),
  PGDATA_DIR: Type.String({ minLength: 1, default: '.data/pg', description: 'Embedded PostgreSQL data folder' }),
  DB_POOL_MAX: Type.Integer({
    minimum: 2,
    maximum: 100,
    default: 10,
    description: 'Connections in the pool; on one hot row more connections only queue inside PostgreSQL',
  }),
  DB_ACQUIRE_TIMEOUT_MS: Type.Integer({
    minimum: 100,
    maximum: 600000,
    default: 60000,
    description: 'Longest wait for a pooled connection before 503 (a 10k burst queues here)',
  }),
  DB_CONNECT_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 60000, default: 3000 }),
  DB_STATEMENT_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 600000, default: 10000 }),
  BALANCE_STRATEGY: Type.Union([Type.Literal('advisory'), Type.Literal('atomic'), Type.Literal('row-lock')], {
    default: 'advisory',
  }),
  LOG_LEVEL: Type.Union(
    ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((level) => Type.Literal(level)),
    { default: 'info' },
  ),
  LOG_PRETTY: Type.Boolean({ default: false }),
  API_TOKENS: Type.Optional(Type.String({
    // Comma-separated; each token 16+ visible ASCII characters other than a comma.
    pattern: '^[\\x21-\\x2B\\x2D-\\x7E]{16,}(,[\\x21-\\x2B\\x2D-\\x7E]{16,})*$',
    description: 'Comma-separated bearer tokens (16+ visible ASCII characters each); set, writes under /api need one',
  })),
  METRICS_ENABLED: Type.Boolean({ default: true, description: 'Serve Prometheus metrics at GET /metrics' }),
})

export type Config = Static<typeof EnvSchema>
export type StrategyName = Config['BALANCE_STRATEGY']

/**
 * Validates `source` (process.env by default, plus `.env` when present) against EnvSchema.
 * A bad value throws an error that names the variable, so the process stops at start.
 */
export function loadConfig (source: Record<string, unknown> = process.env, readDotenv = source === process.env): Config {
  const data = Object.fromEntries(Object.entries(source).filter(([, value]) => value !== '' && value !== undefined))
  // env: false: `data` already is the environment (empty values dropped); env-schema would merge process.env back in,
  // so that `DATABASE_URL=` (empty) failed the pattern instead of meaning "unset".
  return envSchema<Config>({ schema: EnvSchema, data, dotenv: readDotenv, env: false })
}
