import type { Sequelize } from 'sequelize'
import type { StrategyName } from '../config.js'

/** One balance change as the service asks for it: already validated (safe integers, amount ≠ 0, userId ≥ 1). */
export interface ChangeRequest {
  userId: number
  amount: number
}

/** What a strategy reports. Refusals are values, not exceptions: they are ordinary business outcomes. */
export type ChangeOutcome =
  | { outcome: 'applied', balance: number, entryId: number }
  | { outcome: 'insufficient_funds', balance: number }
  | { outcome: 'balance_limit_exceeded', balance: number }
  | { outcome: 'user_not_found' }

/**
 * How a change is made safe under concurrency. Each strategy owns its SQL and nothing else: it knows no HTTP,
 * and takes the money bounds from src/domain/money.ts.
 */
export interface BalanceStrategy {
  readonly name: StrategyName
  change: (request: ChangeRequest) => Promise<ChangeOutcome>
}

export type StrategyFactory = (sequelize: Sequelize) => BalanceStrategy
