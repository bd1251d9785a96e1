import type { Sequelize } from 'sequelize'
import { STRATEGY_NAMES, type StrategyName } from '../config.js'
import { advisoryStrategy } from './advisory.js'
import { atomicStrategy } from './atomic.js'
import { rowLockStrategy } from './row-lock.js'
import type { BalanceStrategy, StrategyFactory } from './types.js'

const factories: Record<StrategyName, StrategyFactory> = {
  advisory: advisoryStrategy,
  atomic: atomicStrategy,
  'row-lock': rowLockStrategy,
}

export const strategyNames: StrategyName[] = [...STRATEGY_NAMES]

export function createStrategy (name: StrategyName, sequelize: Sequelize): BalanceStrategy {
  return factories[name](sequelize)
}
