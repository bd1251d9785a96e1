import fp from 'fastify-plugin'
import { Sequelize } from 'sequelize'
import { startEmbeddedPostgres } from '../db/embedded-postgres.js'
import { guardedPg } from '../db/guarded-pg.js'
import { useHotQueryPooler } from '../db/hot-query.js'
import type { Config } from '../config.js'

declare module 'fastify' {
  interface FastifyInstance {
    sequelize: Sequelize
  }
}

/** The database the service uses inside an embedded cluster (also what `npm run verify` checks there). */
export const EMBEDDED_DATABASE = 'balance'
const POOL_IDLE_MS = 10_000
const QUERY_TIMEOUT_SLACK_MS = 2_000

/**
 * Directly connected, the timeouts are startup parameters of every connection. Behind PgBouncer in transaction mode
 * they cannot be (1.18 refuses them, or drops them with ignore_startup_parameters): every statement sets them LOCAL
 * instead (src/db/pooler.ts).
 */
function serverTimeouts (config: Config): Record<string, number> {
  if (config.DB_POOLER !== 'none') return {}
  return {
    statement_timeout: config.DB_STATEMENT_TIMEOUT_MS,
    lock_timeout: config.DB_STATEMENT_TIMEOUT_MS,
    idle_in_transaction_session_timeout: config.DB_STATEMENT_TIMEOUT_MS,
  }
}

export function createSequelize (url: string, config: Config, log: (sql: string) => void): Sequelize {
  const sequelize = new Sequelize(url, {
    dialect: 'postgres',
    // pg with an 'error' listener on every client from birth: see src/db/guarded-pg.ts.
    dialectModule: guardedPg,
    logging: config.LOG_LEVEL === 'debug' || config.LOG_LEVEL === 'trace' ? log : false,
    benchmark: false,
    pool: {
      max: config.DB_POOL_MAX,
      // Kept open (see warmPool): a burst must not start by opening connections while its own 10k sockets
      // starve the event loop, where a connect can pass DB_CONNECT_TIMEOUT_MS and turn into 503s.
      min: config.DB_POOL_MAX,
      idle: POOL_IDLE_MS,
      acquire: config.DB_ACQUIRE_TIMEOUT_MS,
      evict: POOL_IDLE_MS,
    },
    dialectOptions: {
      application_name: 'balance-api',
      connectionTimeoutMillis: config.DB_CONNECT_TIMEOUT_MS,
      ...serverTimeouts(config),
      // The client gives up a little after the server would have: a half-open TCP connection cannot hang a request.
      query_timeout: config.DB_STATEMENT_TIMEOUT_MS + QUERY_TIMEOUT_SLACK_MS,
      keepAlive: true,
    },
    define: { underscored: true },
  })
  if (config.DB_POOLER !== 'none') {
    const ms = config.DB_STATEMENT_TIMEOUT_MS
    useHotQueryPooler(sequelize, { statementMs: ms, lockMs: ms, idleInTransactionMs: ms })
  }
  return sequelize
}

/** Opens every pooled connection now, at boot, rather than on the first burst. */
export async function warmPool (sequelize: Sequelize, size: number): Promise<void> {
  await Promise.all(Array.from({ length: size }, async () => await sequelize.query('SELECT 1')))
}

/**
 * The Sequelize connection: to DATABASE_URL, or to an embedded PostgreSQL started here (and stopped on close)
 * when DATABASE_URL is unset.
 */
export default fp(async function database (fastify) {
  const { config } = fastify
  const embedded = config.DATABASE_URL === undefined
    ? await startEmbeddedPostgres({
      dataDir: config.PGDATA_DIR,
      database: EMBEDDED_DATABASE,
      log: (line) => { fastify.log.debug({ postgres: line }, 'embedded postgres') },
    })
    : undefined
  if (embedded !== undefined) {
    fastify.log.info({ dataDir: embedded.dataDir, port: embedded.port }, 'embedded PostgreSQL started (DATABASE_URL is unset)')
  }
  const sequelize = createSequelize(config.DATABASE_URL ?? embedded!.url, config, (sql) => { fastify.log.debug({ sql }, 'sql') })
  fastify.decorate('sequelize', sequelize)
  fastify.addHook('onClose', async () => {
    await sequelize.close()
    if (embedded === undefined) return
    await embedded.stop()
    fastify.log.info('embedded PostgreSQL stopped')
  })
  await warmPool(sequelize, config.DB_POOL_MAX)
}, { name: 'database', dependencies: ['config'] })
