import t from 'tap'
import { loadConfig, readConcurrency } from '../../src/config.js'

t.test('defaults', async (t) => {
  const config = loadConfig({}, false)
  t.same(config, {
    PORT: 3000,
    HOST: '0.0.0.0',
    PGDATA_DIR: '.data/pg',
    DB_POOL_MAX: 10,
    DB_ACQUIRE_TIMEOUT_MS: 60000,
    DB_POOL_MAX_WAITING: 16384,
    DB_READ_MAX_WAITING: 1000,
    DB_READ_WAIT_TIMEOUT_MS: 5000,
    DB_CONNECT_TIMEOUT_MS: 5000,
    DB_STATEMENT_TIMEOUT_MS: 10000,
    DB_POOLER: 'none',
    BALANCE_STRATEGY: 'advisory',
    GROUP_COMMIT: 'on',
    GROUP_COMMIT_MAX_BATCH: 512,
    GROUP_COMMIT_MAX_WAITING_PER_USER: 16384,
    GROUP_COMMIT_MAX_WAITING: 32768,
    GROUP_COMMIT_WAIT_TIMEOUT_MS: 30000,
    IDEMPOTENCY_TTL_HOURS: 24,
    HOLD_DEFAULT_EXPIRES_IN_SECONDS: 3600,
    HOLD_MAX_EXPIRES_IN_SECONDS: 604800,
    BULK_MAX_CHANGES: 1000,
    IDEMPOTENCY_MAX_KEYS: 10_000_000,
    LOG_LEVEL: 'info',
    METRICS_AUTH: 'token',
    DOCS_AUTH: 'token',
    METRICS_ENABLED: true,
    EVENTS: 'on',
    EVENTS_STREAM: 'BALANCE_EVENTS',
    EVENTS_SUBJECT_PREFIX: 'balance.events',
    EVENTS_PUBLISH_BATCH: 500,
    EVENTS_POLL_INTERVAL_MS: 200,
    EVENTS_LEASE_TTL_MS: 10000,
    EVENTS_PUBLISH_TIMEOUT_MS: 2000,
    EVENTS_RETRY_MAX_MS: 5000,
    EVENTS_DUPLICATE_WINDOW_S: 600,
    EVENTS_RETENTION_HOURS: 720,
    EVENTS_PRUNE_BATCH: 5000,
    EVENTS_PRUNE_INTERVAL_MS: 60000,
  })
  t.equal(config.DATABASE_URL, undefined, 'no DATABASE_URL means embedded PostgreSQL')
  t.equal(config.LOG_PRETTY, undefined, 'no LOG_PRETTY: pretty when stdout is a terminal, JSON otherwise (src/app.ts)')
  t.equal(readConcurrency(config), 3, 'reads take at most a third of the default pool of 10')
})

t.test('reads are capped below the pool', async (t) => {
  t.equal(readConcurrency(loadConfig({ DB_POOL_MAX: '2' }, false)), 1, 'at least one read at a time on the smallest pool')
  t.equal(readConcurrency(loadConfig({ DB_POOL_MAX: '20', DB_READ_CONCURRENCY: '19' }, false)), 19, 'as set')
  t.throws(() => loadConfig({ DB_POOL_MAX: '4', DB_READ_CONCURRENCY: '4' }, false), /DB_READ_CONCURRENCY \(4\) must be below DB_POOL_MAX \(4\)/)
})

t.test('LOG_PRETTY forces either way when set', async (t) => {
  t.equal(loadConfig({ LOG_PRETTY: 'true' }, false).LOG_PRETTY, true)
  t.equal(loadConfig({ LOG_PRETTY: 'false' }, false).LOG_PRETTY, false)
  t.equal(loadConfig({ LOG_PRETTY: '' }, false).LOG_PRETTY, undefined, 'empty counts as unset')
  t.throws(() => loadConfig({ LOG_PRETTY: 'sometimes' }, false), /LOG_PRETTY/)
})

t.test('values are coerced from strings', async (t) => {
  const config = loadConfig({ PORT: '8080', DB_POOL_MAX: '4', LOG_PRETTY: 'true', BALANCE_STRATEGY: 'atomic', DATABASE_URL: 'postgres://u@h:5432/d' }, false)
  t.equal(config.PORT, 8080)
  t.equal(config.DB_POOL_MAX, 4)
  t.equal(config.LOG_PRETTY, true)
  t.equal(config.BALANCE_STRATEGY, 'atomic')
  t.equal(config.DATABASE_URL, 'postgres://u@h:5432/d')
})

t.test('an empty value counts as unset', async (t) => {
  t.equal(loadConfig({ DATABASE_URL: '' }, false).DATABASE_URL, undefined)
})

t.test('a bad value names the variable', async (t) => {
  const bad: Array<[Record<string, string>, RegExp]> = [
    [{ PORT: 'eighty' }, /PORT/],
    [{ DB_POOLER: 'pgbouncer' }, /DB_POOLER/],
    [{ PORT: '70000' }, /PORT/],
    [{ DB_POOL_MAX: '1' }, /DB_POOL_MAX/],
    [{ DB_POOL_MAX: '1000' }, /DB_POOL_MAX/],
    [{ BALANCE_STRATEGY: 'optimistic' }, /BALANCE_STRATEGY/],
    [{ GROUP_COMMIT: 'yes' }, /GROUP_COMMIT/],
    [{ GROUP_COMMIT_MAX_BATCH: '0' }, /GROUP_COMMIT_MAX_BATCH/],
    [{ GROUP_COMMIT_MAX_BATCH: '4097' }, /GROUP_COMMIT_MAX_BATCH/],
    [{ GROUP_COMMIT_MAX_WAITING_PER_USER: '0' }, /GROUP_COMMIT_MAX_WAITING_PER_USER/],
    [{ GROUP_COMMIT_WAIT_TIMEOUT_MS: '0' }, /GROUP_COMMIT_WAIT_TIMEOUT_MS/],
    [{ DB_POOL_MAX_WAITING: '0' }, /DB_POOL_MAX_WAITING/],
    [{ DB_READ_CONCURRENCY: '0' }, /DB_READ_CONCURRENCY/],
    [{ BULK_MAX_CHANGES: '0' }, /BULK_MAX_CHANGES/],
    [{ BULK_MAX_CHANGES: '5001' }, /BULK_MAX_CHANGES/],
    [{ EVENTS_RETENTION_HOURS: '0' }, /EVENTS_RETENTION_HOURS/],
    [{ EVENTS_RETENTION_HOURS: '87601' }, /EVENTS_RETENTION_HOURS/],
    [{ EVENTS_PRUNE_BATCH: '0' }, /EVENTS_PRUNE_BATCH/],
    [{ EVENTS_PRUNE_BATCH: '50001' }, /EVENTS_PRUNE_BATCH/],
    [{ EVENTS_PRUNE_INTERVAL_MS: '999' }, /EVENTS_PRUNE_INTERVAL_MS/],
    [{ LOG_LEVEL: 'loud' }, /LOG_LEVEL/],
    [{ DATABASE_URL: 'mysql://x' }, /DATABASE_URL/],
  ]
  for (const [env, pattern] of bad) {
    t.throws(() => loadConfig(env, false), pattern, JSON.stringify(env))
  }
})

t.test('.env is read, and the environment wins over it', async (t) => {
  const dir = t.testdir({ '.env': 'PORT=4000\nDB_POOL_MAX=7\nDATABASE_URL=\n' })
  const cwd = process.cwd()
  process.chdir(dir)
  t.teardown(() => { process.chdir(cwd) })
  const config = loadConfig({ PORT: '5000' }, true)
  t.equal(config.PORT, 5000, 'environment wins')
  t.equal(config.DB_POOL_MAX, 7, 'from .env')
  t.equal(config.DATABASE_URL, undefined, 'empty in .env counts as unset')
})
