/**
 * Typed errors the balance service raises. They know nothing of HTTP; src/plugins/error-handler.ts maps
 * each `code` to a status in one table.
 */
export abstract class DomainError extends Error {
  abstract readonly code: string
}

export class UserNotFoundError extends DomainError {
  readonly code = 'USER_NOT_FOUND'
  constructor (readonly userId: number) {
    super(`User ${userId} does not exist`)
  }
}

export class InsufficientFundsError extends DomainError {
  readonly code = 'INSUFFICIENT_FUNDS'
  constructor (readonly userId: number, readonly balance: number, readonly amount: number) {
    super(`Insufficient funds: user ${userId} has ${balance}, the change is ${amount}`)
  }
}

export class BalanceLimitExceededError extends DomainError {
  readonly code = 'BALANCE_LIMIT_EXCEEDED'
  constructor (readonly userId: number, readonly balance: number, readonly amount: number) {
    super(`Balance limit exceeded: user ${userId} has ${balance}, adding ${amount} would pass ${Number.MAX_SAFE_INTEGER}`)
  }
}

/** PostgreSQL could not be reached, or the connection broke mid-request: the outcome may be unknown to us. */
export class DatabaseUnavailableError extends DomainError {
  readonly code = 'DB_UNAVAILABLE'
  constructor (cause?: unknown) {
    super('The database is unavailable; retry with the same Idempotency-Key to learn the outcome', { cause })
  }
}
