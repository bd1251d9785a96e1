import fp from 'fastify-plugin'
import { BalanceService } from '../services/balance-service.js'
import { Idempotency } from '../services/idempotency.js'
import { KeyStoreBudget } from '../services/key-store-budget.js'
import { createStrategy } from '../strategies/index.js'
import { withGroupCommit } from '../strategies/group-commit.js'

declare module 'fastify' {
  interface FastifyInstance {
    balanceService: BalanceService
  }
}

/**
 * The balance service, with the strategy named by BALANCE_STRATEGY (wrapped in group commit unless GROUP_COMMIT=off)
 * and keys kept IDEMPOTENCY_TTL_HOURS, at most IDEMPOTENCY_MAX_KEYS of them.
 */
export default fp(async function balanceService (fastify) {
  const { config, sequelize } = fastify
  const single = createStrategy(config.BALANCE_STRATEGY, sequelize)
  const strategy = config.GROUP_COMMIT === 'on' ? withGroupCommit(single, sequelize, config.GROUP_COMMIT_MAX_BATCH) : single
  fastify.decorate('balanceService', new BalanceService(sequelize, strategy, new Idempotency(config.IDEMPOTENCY_TTL_HOURS, new KeyStoreBudget(sequelize, config.IDEMPOTENCY_MAX_KEYS))))
  fastify.log.info({ strategy: strategy.name, groupCommit: config.GROUP_COMMIT, maxBatch: config.GROUP_COMMIT_MAX_BATCH }, 'balance strategy selected')
}, { name: 'balance-service', dependencies: ['config', 'database', 'migrations'] })
