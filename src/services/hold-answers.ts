import {
  BalanceLimitExceededError, CaptureExceedsHoldError, HoldExpiredError, HoldNotActiveError, HoldNotFoundError,
  InsufficientFundsError, UserNotFoundError,
} from '../domain/errors.js'
import type { HoldOutcome, HoldView } from '../strategies/types.js'

/**
 * A hold write's answer: the hold as it is after the write, the holder's figures from the same transaction, the
 * journal entry a capture wrote, and the payee's leg of a capture that paid another user.
 */
export interface HoldAnswer {
  hold: HoldView
  balance: number
  held: number
  available: number
  entryId: number | null
  payee: { userId: number, balance: number, entryId: number } | null
}

/**
 * Turns a hold outcome into the answer, or throws the domain error that names why it was refused.
 * `amount` is what the request asked for (the hold's amount, or the capture's; undefined: the whole hold).
 */
export function renderHold (outcome: HoldOutcome, request: { holdId?: number, amount?: number }): HoldAnswer {
  switch (outcome.outcome) {
    case 'applied':
      return {
        hold: outcome.hold,
        ...outcome.funds,
        entryId: outcome.entryId,
        payee: outcome.payee ?? null,
      }
    case 'insufficient_funds':
      throw new InsufficientFundsError(outcome.userId, outcome.balance, -(request.amount ?? 0), outcome.available)
    case 'balance_limit_exceeded':
      throw new BalanceLimitExceededError(outcome.userId, outcome.balance, request.amount ?? 0)
    case 'user_not_found':
      throw new UserNotFoundError(outcome.userId)
    case 'hold_not_found':
      throw new HoldNotFoundError(outcome.holdId)
    case 'hold_expired':
      throw new HoldExpiredError(outcome.hold.holdId, outcome.hold.expiresAt)
    case 'hold_not_active':
      throw new HoldNotActiveError(outcome.hold.holdId, outcome.hold.status)
    case 'capture_exceeds_hold':
      throw new CaptureExceedsHoldError(outcome.hold.holdId, outcome.hold.amount, request.amount ?? outcome.hold.amount)
  }
}

/**
 * Holders of holds this instance created or touched, so a capture or void can join the holder's group-commit lane
 * without first reading the hold (its holder never changes). Bounded: the oldest entry goes first past `capacity`.
 */
export class HoldOwners {
  private readonly owners = new Map<number, number>()

  constructor (private readonly capacity: number) {}

  get (holdId: number): number | undefined {
    return this.owners.get(holdId)
  }

  remember (holdId: number, userId: number): void {
    if (this.owners.has(holdId)) return
    if (this.owners.size >= this.capacity) {
      const oldest = this.owners.keys().next()
      if (oldest.done !== true) this.owners.delete(oldest.value)
    }
    this.owners.set(holdId, userId)
  }
}
