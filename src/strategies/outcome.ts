import { assertBalanceInBounds, toSafeInteger } from '../domain/money.js'
import type { ChangeOutcome, IdempotencyClaim, Keyed, TransferLeg, TransferOutcome } from './types.js'

/** The row shape every strategy's SQL returns: BIGINTs arrive from pg as strings. */
export interface OutcomeRow {
  outcome: string
  balance: string | null
  entry_id: string | null
}

/** The row shape of every keyed function (db/migrations/0004): how the key was used, and the outcome as JSON. */
export interface KeyedRow {
  idempotency: string
  result: unknown
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

/** The binds a keyed function takes after its own: [key, fingerprint, ttl, purge], all NULL without a key. */
export function claimBinds (claim: IdempotencyClaim | undefined): Array<string | number | null> {
  return claim === undefined ? [null, null, null, null] : [claim.key, claim.fingerprint, claim.ttlSeconds, claim.purgeLimit]
}

/** One field of a stored outcome. The JSON was written by our own SQL; anything unexpected is a bug, not input. */
export function jsonField (json: unknown, name: string): unknown {
  if (typeof json !== 'object' || json === null) throw new Error('invariant: an outcome is not a JSON object')
  return (json as Record<string, unknown>)[name]
}

export function jsonInteger (json: unknown, name: string): number {
  const value = jsonField(json, name)
  if (typeof value !== 'number' && typeof value !== 'string') throw new Error(`invariant: outcome field ${name} is not a number`)
  return toSafeInteger(value, name)
}

export function jsonString (json: unknown, name: string): string {
  const value = jsonField(json, name)
  if (typeof value !== 'string') throw new Error(`invariant: outcome field ${name} is not a string`)
  return value
}

function jsonBalance (json: unknown, name: string): number {
  return assertBalanceInBounds(jsonInteger(json, name))
}

/** Parses a keyed function's row with `parse` for the outcome JSON (executed now or replayed). */
export function toKeyed<T> (row: KeyedRow | undefined, parse: (json: unknown) => T): Keyed<T> {
  if (row === undefined) throw new Error('invariant: a keyed write returned no row')
  switch (row.idempotency) {
    case 'executed':
    case 'replayed':
      return { idempotency: row.idempotency, outcome: parse(row.result) }
    case 'reused':
      return { idempotency: 'reused' }
    default:
      throw new Error(`invariant: unknown idempotency state ${row.idempotency}`)
  }
}

/** A change's outcome as stored with its key (change_keyed_finish in db/migrations/0004). */
export function changeFromJson (json: unknown): ChangeOutcome {
  const outcome = jsonField(json, 'outcome')
  switch (outcome) {
    case 'applied':
      return { outcome, balance: jsonBalance(json, 'balance'), entryId: jsonInteger(json, 'entryId') }
    case 'insufficient_funds':
    case 'balance_limit_exceeded':
      return { outcome, balance: jsonBalance(json, 'balance') }
    case 'user_not_found':
      return { outcome }
    default:
      throw new Error(`invariant: unknown change outcome ${String(outcome)}`)
  }
}

function leg (json: unknown, side: 'from' | 'to'): TransferLeg {
  return { userId: jsonInteger(json, `${side}UserId`), balance: jsonBalance(json, `${side}Balance`), entryId: jsonInteger(json, `${side}EntryId`) }
}

/** A transfer's outcome (transfer_journal / transfer_refusal in db/migrations/0004). */
export function transferFromJson (json: unknown): TransferOutcome {
  const outcome = jsonField(json, 'outcome')
  switch (outcome) {
    case 'applied':
      return { outcome, transferId: jsonString(json, 'transferId'), from: leg(json, 'from'), to: leg(json, 'to') }
    case 'insufficient_funds':
    case 'balance_limit_exceeded':
      return { outcome, userId: jsonInteger(json, 'userId'), balance: jsonBalance(json, 'balance') }
    case 'user_not_found':
      return { outcome, userId: jsonInteger(json, 'userId') }
    default:
      throw new Error(`invariant: unknown transfer outcome ${String(outcome)}`)
  }
}
