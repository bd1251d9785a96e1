import type { Sequelize } from 'sequelize'
import { BalanceLimitExceededError, DatabaseUnavailableError, InsufficientFundsError, UserNotFoundError } from '../domain/errors.js'
import { assertBalanceInBounds, toSafeInteger } from '../domain/money.js'
import { isDatabaseUnavailable } from '../db/errors.js'
import type { defineModels } from '../db/models.js'
import type { BalanceStrategy, ChangeOutcome, ChangeRequest } from '../strategies/types.js'

export interface AppliedChange {
  userId: number
  balance: number
  amount: number
  entryId: number
}

export interface UserView {
  id: number
  balance: number
  createdAt: Date
  updatedAt: Date
}

/** How a change ended: a strategy outcome, or the database was unavailable, or an unexpected error (a bug). */
export type ChangeResult = ChangeOutcome['outcome'] | 'db_unavailable' | 'error'

/**
 * Told about every change the service makes (metrics). Called on the hot path: must be cheap and must not throw.
 * `seconds` is the time of the strategy call alone (its transaction), not of the HTTP request.
 */
export interface BalanceObserver {
  changeFinished: (strategy: string, result: ChangeResult, seconds: number) => void
}

/**
 * The one interface routes use: change, read, health. It picks nothing itself: the strategy is given.
 * Refused outcomes become typed domain errors; a lost database becomes DatabaseUnavailableError.
 */
export class BalanceService {
  constructor (
    private readonly sequelize: Sequelize,
    private readonly models: ReturnType<typeof defineModels>,
    readonly strategy: BalanceStrategy,
  ) {}

  private observer: BalanceObserver | undefined

  /** Sets the one observer told about every change (none by default). */
  observe (observer: BalanceObserver): void {
    this.observer = observer
  }

  async change (request: ChangeRequest): Promise<AppliedChange> {
    const result = this.observer === undefined
      ? await this.guard(async () => await this.strategy.change(request))
      : await this.observed(this.observer, request)
    switch (result.outcome) {
      case 'applied':
        return { userId: request.userId, balance: result.balance, amount: request.amount, entryId: result.entryId }
      case 'insufficient_funds':
        throw new InsufficientFundsError(request.userId, result.balance, request.amount)
      case 'balance_limit_exceeded':
        throw new BalanceLimitExceededError(request.userId, result.balance, request.amount)
      case 'user_not_found':
        throw new UserNotFoundError(request.userId)
    }
  }

  async getUser (id: number): Promise<UserView> {
    const user = await this.guard(async () => await this.models.User.findByPk(id, { raw: true }))
    if (user === null) throw new UserNotFoundError(id)
    return {
      id: toSafeInteger(user.id, 'user id'),
      balance: assertBalanceInBounds(toSafeInteger(user.balance, 'balance')),
      createdAt: user.createdAt,
      updatedAt: user.updatedAt,
    }
  }

  /** True when PostgreSQL answers a trivial query. */
  async isDatabaseUp (): Promise<boolean> {
    try {
      await this.sequelize.query('SELECT 1')
      return true
    } catch (error) {
      if (isDatabaseUnavailable(error)) return false
      throw error
    }
  }

  private async observed (observer: BalanceObserver, request: ChangeRequest): Promise<ChangeOutcome> {
    const started = performance.now()
    try {
      const result = await this.guard(async () => await this.strategy.change(request))
      observer.changeFinished(this.strategy.name, result.outcome, (performance.now() - started) / 1000)
      return result
    } catch (error) {
      observer.changeFinished(this.strategy.name, error instanceof DatabaseUnavailableError ? 'db_unavailable' : 'error', (performance.now() - started) / 1000)
      throw error
    }
  }

  /** Runs database work; a connection-level failure becomes DatabaseUnavailableError, anything else stays a bug. */
  private async guard<T> (work: () => Promise<T>): Promise<T> {
    try {
      return await work()
    } catch (error) {
      if (isDatabaseUnavailable(error)) throw new DatabaseUnavailableError(error)
      throw error
    }
  }
}
