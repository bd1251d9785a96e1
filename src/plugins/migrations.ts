import fp from 'fastify-plugin'
import { Umzug, SequelizeStorage } from 'umzug'
import type { Sequelize } from 'sequelize'
import type { FastifyBaseLogger } from 'fastify'
import { migrations } from '../../db/migrations/index.js'
import { seeders } from '../../db/seeders/index.js'
import type { Migration } from '../../db/types.js'

/**
 * A constant key in the two-int advisory lock space, which cannot collide with the bigint space where
 * user ids are locked. Several instances booting on one fresh database queue here; the first migrates,
 * the others find nothing pending.
 */
const MIGRATION_LOCK = [0x62616c, 1] as const
/** How long a booting instance waits for another one's migration run. */
const MIGRATION_LOCK_WAIT = '120s'

function umzugFor (sequelize: Sequelize, steps: Migration[], tableName: string, log: FastifyBaseLogger): Umzug<Sequelize> {
  return new Umzug({
    migrations: steps,
    context: sequelize,
    // A distinct model name per table: SequelizeStorage reuses a model that already has its name.
    storage: new SequelizeStorage({ sequelize, tableName, modelName: tableName }),
    logger: {
      info: (event) => { log.info(event, 'migration') },
      warn: (event) => { log.warn(event, 'migration') },
      error: (event) => { log.error(event, 'migration') },
      debug: (event) => { log.debug(event, 'migration') },
    },
  })
}

/** The two Umzug runners: schema migrations, then data seeders. */
export function migrators (sequelize: Sequelize, log: FastifyBaseLogger): { migrations: Umzug<Sequelize>, seeders: Umzug<Sequelize> } {
  return {
    migrations: umzugFor(sequelize, migrations, 'SequelizeMeta', log),
    seeders: umzugFor(sequelize, seeders, 'SequelizeData', log),
  }
}

/** Runs db/migrations then db/seeders, each once per database, under a lock held by one pooled connection. */
export async function migrate (sequelize: Sequelize, log: FastifyBaseLogger): Promise<void> {
  await sequelize.transaction(async (transaction) => {
    // This transaction sits idle holding the lock while Umzug works: lift the idle timeout, bound the lock wait.
    await sequelize.query(`SET LOCAL idle_in_transaction_session_timeout = 0; SET LOCAL lock_timeout = '${MIGRATION_LOCK_WAIT}'`, { transaction })
    await sequelize.query('SELECT pg_advisory_xact_lock(:a, :b)', { replacements: { a: MIGRATION_LOCK[0], b: MIGRATION_LOCK[1] }, transaction })
    // Umzug works on other pooled connections while this transaction holds the lock (DB_POOL_MAX ≥ 2).
    const runners = migrators(sequelize, log)
    await runners.migrations.up()
    await runners.seeders.up()
  })
}

export default fp(async function migrations (fastify) {
  await migrate(fastify.sequelize, fastify.log)
}, { name: 'migrations', dependencies: ['database'] })
