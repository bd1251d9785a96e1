import fp from 'fastify-plugin'
import { readConcurrency } from '../config.js'
import { BalanceService } from '../services/balance-service.js'
import { Gate } from '../services/admission.js'
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
  const strategy = config.GROUP_COMMIT === 'on'
    ? withGroupCommit(single, sequelize, {
      maxBatch: config.GROUP_COMMIT_MAX_BATCH,
      maxWaitingPerUser: config.GROUP_COMMIT_MAX_WAITING_PER_USER,
      maxWaiting: config.GROUP_COMMIT_MAX_WAITING,
      waitTimeoutMs: config.GROUP_COMMIT_WAIT_TIMEOUT_MS,
    })
    : single
  const reads = new Gate('read', {
    concurrency: readConcurrency(config),
    maxWaiting: config.DB_READ_MAX_WAITING,
    waitTimeoutMs: config.DB_READ_WAIT_TIMEOUT_MS,
  })
  // sequelize-pool counts its pending acquires; Sequelize does not type its pool.
  const pool = (): { waiting: number } | undefined => (sequelize.connectionManager as unknown as { pool?: { waiting: number } }).pool
  fastify.decorate('balanceService', new BalanceService(sequelize, strategy, new Idempotency(config.IDEMPOTENCY_TTL_HOURS, new KeyStoreBudget(sequelize, config.IDEMPOTENCY_MAX_KEYS)), {
    reads,
    poolWaiting: () => pool()?.waiting ?? 0,
    maxPoolWaiting: config.DB_POOL_MAX_WAITING,
  }, {
    defaultExpiresInSeconds: config.HOLD_DEFAULT_EXPIRES_IN_SECONDS,
    maxExpiresInSeconds: config.HOLD_MAX_EXPIRES_IN_SECONDS,
  }))
  fastify.log.info({ strategy: strategy.name, groupCommit: config.GROUP_COMMIT, maxBatch: config.GROUP_COMMIT_MAX_BATCH }, 'balance strategy selected')
}, { name: 'balance-service', dependencies: ['config', 'database', 'migrations'] })
