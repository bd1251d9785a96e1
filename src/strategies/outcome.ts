import { assertBalanceInBounds, toSafeInteger } from '../domain/money.js'
import type { ChangeOutcome, HoldOutcome, HoldStatus, HoldView, IdempotencyClaim, Keyed, Metadata, TransferLeg, TransferOutcome } from './types.js'

/** The row shape every strategy's SQL returns: BIGINTs arrive from pg as strings. */
export interface OutcomeRow {
  outcome: string
  balance: string | null
  entry_id: string | null
  /** balance − held (db/migrations/0010); absent from functions that predate holds. */
  available?: string | null
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
    case 'applied': {
      const applied = {
        outcome: 'applied' as const,
        balance: assertBalanceInBounds(toSafeInteger(row.balance ?? NaN, 'balance')),
        entryId: toSafeInteger(row.entry_id ?? NaN, 'entry id'),
      }
      const available = row.available ?? null
      return available === null ? applied : { ...applied, available: assertBalanceInBounds(toSafeInteger(available, 'available')) }
    }
    case 'insufficient_funds': {
      const balance = assertBalanceInBounds(toSafeInteger(row.balance ?? NaN, 'balance'))
      const available = row.available ?? null
      return available === null ? { outcome: row.outcome, balance } : { outcome: row.outcome, balance, available: assertBalanceInBounds(toSafeInteger(available, 'available')) }
    }
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

/** `available` of a refusal: stored outcomes from before holds existed have none (then it equalled the balance). */
function jsonAvailable (json: unknown): { available?: number } {
  const value = jsonField(json, 'available')
  return value === undefined || value === null ? {} : { available: jsonBalance(json, 'available') }
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
      return { outcome, balance: jsonBalance(json, 'balance'), entryId: jsonInteger(json, 'entryId'), ...jsonAvailable(json) }
    case 'insufficient_funds':
      return { outcome, balance: jsonBalance(json, 'balance'), ...jsonAvailable(json) }
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
      return { outcome, userId: jsonInteger(json, 'userId'), balance: jsonBalance(json, 'balance'), ...jsonAvailable(json) }
    case 'balance_limit_exceeded':
      return { outcome, userId: jsonInteger(json, 'userId'), balance: jsonBalance(json, 'balance') }
    case 'user_not_found':
      return { outcome, userId: jsonInteger(json, 'userId') }
    default:
      throw new Error(`invariant: unknown transfer outcome ${String(outcome)}`)
  }
}

const HOLD_STATUSES: readonly HoldStatus[] = ['active', 'captured', 'voided', 'expired']

export function jsonDate (json: unknown, name: string): Date {
  const date = new Date(jsonString(json, name))
  if (Number.isNaN(date.getTime())) throw new Error(`invariant: outcome field ${name} is not a timestamp`)
  return date
}

function jsonNullable<T> (json: unknown, name: string, parse: (json: unknown, name: string) => T): T | null {
  const value = jsonField(json, name)
  return value === undefined || value === null ? null : parse(json, name)
}

/** Metadata as stored: a flat object of strings (the route schema bounded it on the way in). */
export function metadataFrom (value: unknown): Metadata | null {
  if (value === undefined || value === null) return null
  if (typeof value !== 'object' || Array.isArray(value)) throw new Error('invariant: metadata is not an object')
  for (const entry of Object.values(value)) {
    if (typeof entry !== 'string') throw new Error('invariant: a metadata value is not a string')
  }
  return value as Metadata
}

/** A hold as hold_json() (db/migrations/0010) renders it. */
export function holdFromJson (json: unknown): HoldView {
  const status = jsonString(json, 'status') as HoldStatus
  if (!HOLD_STATUSES.includes(status)) throw new Error(`invariant: unknown hold status ${status}`)
  return {
    holdId: jsonInteger(json, 'holdId'),
    userId: jsonInteger(json, 'userId'),
    amount: jsonBalance(json, 'amount'),
    status,
    captured: jsonBalance(json, 'captured'),
    released: jsonBalance(json, 'released'),
    expiresAt: jsonDate(json, 'expiresAt'),
    createdAt: jsonDate(json, 'createdAt'),
    settledAt: jsonNullable(json, 'settledAt', jsonDate),
    toUserId: jsonNullable(json, 'toUserId', jsonInteger),
    metadata: metadataFrom(jsonField(json, 'metadata')),
  }
}

/** A hold write's outcome (ledger_batch and hold_capture_to in db/migrations/0010). */
export function holdOutcomeFromJson (json: unknown): HoldOutcome {
  const outcome = jsonField(json, 'outcome')
  switch (outcome) {
    case 'applied': {
      const payee = jsonNullable(json, 'toEntryId', jsonInteger)
      return {
        outcome,
        hold: holdFromJson(jsonField(json, 'hold')),
        funds: { balance: jsonBalance(json, 'balance'), held: jsonBalance(json, 'held'), available: jsonBalance(json, 'available') },
        entryId: jsonNullable(json, 'entryId', jsonInteger),
        ...(payee === null ? {} : { payee: { userId: jsonInteger(json, 'toUserId'), balance: jsonBalance(json, 'toBalance'), entryId: payee } }),
      }
    }
    case 'insufficient_funds':
      return { outcome, userId: jsonInteger(json, 'userId'), balance: jsonBalance(json, 'balance'), available: jsonBalance(json, 'available') }
    case 'balance_limit_exceeded':
      return { outcome, userId: jsonInteger(json, 'toUserId'), balance: jsonBalance(json, 'toBalance') }
    case 'user_not_found':
      return { outcome, userId: jsonInteger(json, jsonField(json, 'toUserId') === undefined ? 'userId' : 'toUserId') }
    case 'hold_not_found':
      return { outcome, holdId: jsonInteger(json, 'holdId') }
    case 'hold_expired':
    case 'hold_not_active':
    case 'capture_exceeds_hold':
      return { outcome, hold: holdFromJson(jsonField(json, 'hold')) }
    default:
      throw new Error(`invariant: unknown hold outcome ${String(outcome)}`)
  }
}
