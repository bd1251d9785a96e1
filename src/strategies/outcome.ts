import { assertBalanceInBounds, toSafeInteger } from '../domain/money.js'
import type { ChangeOutcome } from './types.js'

/** The row shape every strategy's SQL returns: BIGINTs arrive from pg as strings. */
export interface OutcomeRow {
  outcome: string
  balance: string | null
  entry_id: string | null
}

/** Turns a strategy's SQL result row into a typed outcome, asserting the invariants on the way. */
export function toChangeOutcome (row: OutcomeRow | undefined): ChangeOutcome {
  if (row === undefined) throw new Error('invariant: a change returned no outcome row')
  switch (row.outcome) {
    case 'user_not_found':
      return { outcome: 'user_not_found' }
    case 'applied':
      return {
        outcome: 'applied',
        balance: assertBalanceInBounds(toSafeInteger(row.balance ?? NaN, 'balance')),
        entryId: toSafeInteger(row.entry_id ?? NaN, 'entry id'),
      }
    case 'insufficient_funds':
    case 'balance_limit_exceeded':
      return { outcome: row.outcome, balance: assertBalanceInBounds(toSafeInteger(row.balance ?? NaN, 'balance')) }
    default:
      throw new Error(`invariant: unknown change outcome ${row.outcome}`)
  }
}
