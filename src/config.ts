import { existsSync, readFileSync } from 'node:fs'
import { parseEnv } from 'node:util'
import envSchema from 'env-schema'
import { Type, type Static } from 'typebox'

/** No hold lives longer than 30 days, whatever the configuration: the route schema's bound (src/schemas/holds.ts). */
export const MAX_HOLD_LIFETIME_SECONDS = 2_592_000

/** The largest GROUP_COMMIT_MAX_BATCH accepted: one statement's arrays stay small (src/strategies/group-commit.ts). */
export const MAX_BATCH_LIMIT = 4096

/** The largest BULK_MAX_CHANGES accepted: bounds one request's body (src/limits.ts) and one atomic transaction. */
export const MAX_BULK_CHANGES_LIMIT = 5000

/** The concurrency strategies, the one list: the config schema, src/strategies/index.ts and the tests read it. */
export const STRATEGY_NAMES = ['advisory', 'atomic', 'row-lock'] as const

/** Comma-separated bearer tokens; each 16+ visible ASCII characters other than a comma. */
const TOKEN_LIST = '^[\\x21-\\x2B\\x2D-\\x7E]{16,}(,[\\x21-\\x2B\\x2D-\\x7E]{16,})*$'

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
  DB_POOL_MAX_WAITING: Type.Integer({
    minimum: 1,
    maximum: 100000,
    default: 16384,
    description: 'Most requests waiting for a pooled connection; a write past it is refused at once (503 OVERLOADED)',
  }),
  DB_READ_CONCURRENCY: Type.Optional(Type.Integer({
    minimum: 1,
    maximum: 99,
    description: 'Most reads (user, history, health) on the pool at once; below DB_POOL_MAX, so reads never take every connection from writes; unset: a third of DB_POOL_MAX (at least 1)',
  })),
  DB_READ_MAX_WAITING: Type.Integer({
    minimum: 1,
    maximum: 100000,
    default: 1000,
    description: 'Most reads waiting for a read slot; more are refused at once (503 OVERLOADED)',
  }),
  DB_READ_WAIT_TIMEOUT_MS: Type.Integer({
    minimum: 1,
    maximum: 600000,
    default: 5000,
    description: 'Longest a read waits for a read slot before 503 OVERLOADED',
  }),
  DB_CONNECT_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 60000, default: 5000 }),
  DB_STATEMENT_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 600000, default: 10000 }),
  DB_POOLER: Type.Enum(['none', 'pgbouncer-transaction'], {
    default: 'none',
    description: 'What sits between the service and PostgreSQL: none (direct), or PgBouncer in transaction pooling mode',
  }),
  BALANCE_STRATEGY: Type.Enum(STRATEGY_NAMES, { default: 'advisory' }),
  GROUP_COMMIT: Type.Enum(['on', 'off'], {
    default: 'on',
    description: 'on: changes to one user that arrive while its previous statement is in flight share the next transaction',
  }),
  GROUP_COMMIT_MAX_BATCH: Type.Integer({
    minimum: 1,
    maximum: MAX_BATCH_LIMIT,
    default: 512,
    description: 'Most changes one group-commit transaction carries',
  }),
  GROUP_COMMIT_MAX_WAITING_PER_USER: Type.Integer({
    minimum: 1,
    maximum: 1000000,
    default: 16384,
    description: 'Most changes waiting for one user\'s next batch; more are refused at once (503 OVERLOADED)',
  }),
  GROUP_COMMIT_MAX_WAITING: Type.Integer({
    minimum: 1,
    maximum: 1000000,
    default: 32768,
    description: 'Most changes waiting for a batch over all users; more are refused at once (503 OVERLOADED)',
  }),
  GROUP_COMMIT_WAIT_TIMEOUT_MS: Type.Integer({
    minimum: 1,
    maximum: 600000,
    default: 30000,
    description: 'Longest a change waits for its batch; past it, 503 OVERLOADED and it is never applied',
  }),
  IDEMPOTENCY_TTL_HOURS: Type.Integer({
    minimum: 1,
    maximum: 8760,
    default: 24,
    description: 'Idempotency keys are kept at least this long (then forgotten: the same key runs as new)',
  }),
  IDEMPOTENCY_MAX_KEYS: Type.Integer({
    minimum: 1000,
    maximum: 1_000_000_000,
    default: 10_000_000,
    description: 'Most idempotency keys kept at once (PostgreSQL\'s live-row estimate); past it a new keyed write is 503 OVERLOADED',
  }),
  HOLD_DEFAULT_EXPIRES_IN_SECONDS: Type.Integer({
    minimum: 1,
    maximum: MAX_HOLD_LIFETIME_SECONDS,
    default: 3600,
    description: 'How long a hold lives when POST /api/holds does not say (expiresInSeconds)',
  }),
  HOLD_MAX_EXPIRES_IN_SECONDS: Type.Integer({
    minimum: 1,
    maximum: MAX_HOLD_LIFETIME_SECONDS,
    default: 604_800,
    description: 'The longest expiresInSeconds a hold may ask for (7 days by default); above it, 400 HOLD_EXPIRY_TOO_LONG',
  }),
  BULK_MAX_CHANGES: Type.Integer({
    minimum: 1,
    maximum: MAX_BULK_CHANGES_LIMIT,
    default: 1000,
    description: 'Most changes one POST /api/balance/batch may carry; more are refused (413 BULK_TOO_MANY_CHANGES)',
  }),
  LOG_LEVEL: Type.Enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], { default: 'info' }),
  LOG_PRETTY: Type.Optional(Type.Boolean({
    description: 'true: human-readable lines (pino-pretty); false: JSON lines; unset: pretty when stdout is a terminal',
  })),
  API_TOKENS: Type.Optional(Type.String({
    pattern: TOKEN_LIST,
    description: 'Comma-separated bearer tokens (16+ visible ASCII characters each) that may read and write; ' +
      'set (or API_READ_TOKENS set), every route under /api but the liveness probe needs a token',
  })),
  API_READ_TOKENS: Type.Optional(Type.String({
    pattern: TOKEN_LIST,
    description: 'Comma-separated bearer tokens that may only read (GET/HEAD): a write with one is 403 FORBIDDEN',
  })),
  METRICS_AUTH: Type.Enum(['token', 'open'], {
    default: 'token',
    description: 'token: GET /metrics needs a token (read or write) while tokens are set; open: never',
  }),
  DOCS_AUTH: Type.Enum(['token', 'open'], {
    default: 'token',
    description: 'token: /docs and /docs/json need a token (read or write) while tokens are set; open: never (to browse Swagger UI)',
  }),
  METRICS_ENABLED: Type.Boolean({ default: true, description: 'Serve Prometheus metrics at GET /metrics' }),
  EVENTS: Type.Enum(['on', 'off'], {
    default: 'on',
    description: 'on: every committed journal entry writes its event in the same transaction (the feed and the publisher read them); off: the database triggers that write them are disabled at boot',
  }),
  EVENTS_NATS_URL: Type.Optional(Type.String({
    pattern: '^nats://[^,\\s]+(,nats://[^,\\s]+)*$',
    description: 'NATS server(s) with JetStream, comma-separated nats:// URLs; set, this instance runs a publisher (one instance publishes at a time)',
  })),
  EVENTS_STREAM: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$', default: 'BALANCE_EVENTS', description: 'JetStream stream the events go to (created when missing)' }),
  EVENTS_SUBJECT_PREFIX: Type.String({
    pattern: '^[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*$',
    default: 'balance.events',
    description: 'Subjects are <prefix>.<userId>',
  }),
  EVENTS_PUBLISH_BATCH: Type.Integer({ minimum: 1, maximum: 10000, default: 500, description: 'Most events one publisher round reads and publishes' }),
  EVENTS_POLL_INTERVAL_MS: Type.Integer({ minimum: 10, maximum: 60000, default: 200, description: 'Pause of the publisher when it has caught up (or is not the lease holder)' }),
  EVENTS_LEASE_TTL_MS: Type.Integer({ minimum: 1000, maximum: 600000, default: 10000, description: 'The publisher lease: another instance takes over this long after the holder stopped renewing it' }),
  EVENTS_PUBLISH_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 60000, default: 2000, description: 'Longest wait for JetStream to acknowledge one event (and for a connection to NATS)' }),
  EVENTS_RETRY_MAX_MS: Type.Integer({ minimum: 100, maximum: 600000, default: 5000, description: 'Longest pause between the publisher\'s attempts after a failure (it doubles from EVENTS_POLL_INTERVAL_MS)' }),
  EVENTS_DUPLICATE_WINDOW_S: Type.Integer({ minimum: 1, maximum: 604800, default: 600, description: 'duplicate_window of a stream this service creates: a re-publish within it is dropped by JetStream' }),
  EVENTS_RETENTION_HOURS: Type.Integer({
    minimum: 1,
    maximum: 87600,
    default: 720,
    description: 'Events older than this are deleted (never one not yet published, docs/events.md); also the max_age of a stream this service creates',
  }),
  EVENTS_PRUNE_BATCH: Type.Integer({ minimum: 1, maximum: 50000, default: 5000, description: 'Most events one prune statement deletes' }),
  EVENTS_PRUNE_INTERVAL_MS: Type.Integer({ minimum: 1000, maximum: 3600000, default: 60000, description: 'Pause between prune rounds (a round that deleted a full batch goes on at once)' }),
})

export type Config = Static<typeof EnvSchema>
export type StrategyName = Config['BALANCE_STRATEGY']
export type PoolerName = Config['DB_POOLER']

/**
 * Validates `source` (process.env by default, plus `.env` when present) against EnvSchema.
 * A bad value throws an error that names the variable, so the process stops at start.
 */
export function loadConfig (source: Record<string, unknown> = process.env, readDotenv = source === process.env): Config {
  // The process environment wins over .env, as everywhere else; an empty value counts as unset.
  const merged = { ...(readDotenv ? readDotenvFile() : {}), ...source }
  const data = Object.fromEntries(Object.entries(merged).filter(([, value]) => value !== '' && value !== undefined))
  let config: Config
  try {
    config = envSchema<Config>({ schema: EnvSchema, data, env: false, dotenv: false })
  } catch (error) {
    // env-schema says e.g. "env/PORT must be integer": name the variable plainly.
    throw new Error(`Invalid configuration: ${(error as Error).message.replace(/env\//g, '')}`, { cause: error })
  }
  // Reads are capped below the pool so that writes always have a connection left.
  if (config.DB_READ_CONCURRENCY !== undefined && config.DB_READ_CONCURRENCY >= config.DB_POOL_MAX) {
    throw new Error(`Invalid configuration: DB_READ_CONCURRENCY (${config.DB_READ_CONCURRENCY}) must be below DB_POOL_MAX (${config.DB_POOL_MAX})`)
  }
  return config
}

/** Reads on the pool at once: DB_READ_CONCURRENCY, or a third of the pool, so that two thirds stay for writes. */
export function readConcurrency (config: Config): number {
  return config.DB_READ_CONCURRENCY ?? Math.max(1, Math.floor(config.DB_POOL_MAX / 3))
}

function readDotenvFile (path = '.env'): Record<string, string> {
  return existsSync(path) ? parseEnv(readFileSync(path, 'utf8')) as Record<string, string> : {}
}
