import fp from 'fastify-plugin'
import { BalanceService } from '../services/balance-service.js'
import { Idempotency } from '../services/idempotency.js'
import { createStrategy } from '../strategies/index.js'

declare module 'fastify' {
  interface FastifyInstance {
    balanceService: BalanceService
  }
}

/** The balance service, with the strategy named by BALANCE_STRATEGY and keys kept IDEMPOTENCY_TTL_HOURS. */
export default fp(async function balanceService (fastify) {
  const strategy = createStrategy(fastify.config.BALANCE_STRATEGY, fastify.sequelize)
  fastify.decorate('balanceService', new BalanceService(fastify.sequelize, fastify.models, strategy, new Idempotency(fastify.config.IDEMPOTENCY_TTL_HOURS)))
  fastify.log.info({ strategy: strategy.name }, 'balance strategy selected')
}, { name: 'balance-service', dependencies: ['config', 'database', 'migrations'] })
