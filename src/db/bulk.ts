import type { Sequelize } from 'sequelize'
import { hotQuery } from './hot-query.js'
import { MAX_BALANCE, MIN_BALANCE } from '../domain/money.js'
import { changeFromJson, claimBinds, jsonField, jsonInteger, toChangeOutcome, toKeyed, type KeyedRow, type OutcomeRow } from '../strategies/outcome.js'
import type { BatchLock, ChangeOutcome, ChangeRequest, IdempotencyClaim, Keyed } from '../strategies/types.js'

/**
 * An atomic bulk change: every change, to any users, in ONE transaction and one round trip, or none
 * (ledger_bulk(), db/migrations/0012). Strategy-independent SQL like creating a user: what differs per strategy is
 * only the lock (`batchLock`: advisory locks then row locks, or row locks), in the order every other write takes them.
 * Binds [lock, userIds[], amounts[], metadata[], MIN_BALANCE, MAX_BALANCE, key, fingerprint, ttlSeconds, purgeLimit].
 */
const BULK = { name: 'ledger_bulk_v1', text: 'SELECT idempotency, result FROM ledger_bulk($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)' }

/**
 * A bulk request's keyless changes, each decided on its own as a one-at-a-time run in array order would decide it, in
 * ONE transaction and one round trip (ledger_bulk_each(), db/migrations/0012), under the same locks in the same order.
 * Binds [lock, userIds[], amounts[], metadata[], MIN_BALANCE, MAX_BALANCE]; one row per change, in array order.
 */
const BULK_EACH = { name: 'ledger_bulk_each_v1', text: 'SELECT ord, outcome, balance, entry_id, available FROM ledger_bulk_each($1, $2, $3, $4, $5, $6)' }

/** The bulk functions' per-change binds: users, amounts, metadata (a jsonb[] parameter: an array of JSON texts). */
function changeBinds (changes: readonly ChangeRequest[]): unknown[] {
  return [
    changes.map((change) => change.userId),
    changes.map((change) => change.amount),
    changes.map((change) => (change.metadata === undefined ? null : JSON.stringify(change.metadata))),
  ]
}

/** Each change's outcome, in array order. Once this resolves the transaction has committed. */
export async function changeEachAtOnce (sequelize: Sequelize, lock: BatchLock, changes: readonly ChangeRequest[]): Promise<ChangeOutcome[]> {
  const rows = await hotQuery<OutcomeRow & { ord: number }>(sequelize, BULK_EACH, [lock, ...changeBinds(changes), MIN_BALANCE, MAX_BALANCE])
  if (rows.length !== changes.length) throw new Error(`invariant: a bulk of ${changes.length} returned ${rows.length} rows`)
  return rows.map((row, index) => {
    if (row.ord !== index + 1) throw new Error(`invariant: bulk row ${index + 1} out of order`)
    return toChangeOutcome(row)
  })
}

/** What an atomic bulk change came to: every change applied (outcomes in array order), or the first refusal. */
export type BulkOutcome =
  | { outcome: 'applied', results: ChangeOutcome[] }
  | { outcome: 'refused', index: number, refusal: ChangeOutcome }

function bulkFromJson (json: unknown): BulkOutcome {
  const outcome = jsonField(json, 'outcome')
  if (outcome === 'applied') {
    const results = jsonField(json, 'results')
    if (!Array.isArray(results)) throw new Error('invariant: an applied bulk outcome has no results')
    return { outcome, results: results.map((result: unknown) => changeFromJson({ outcome: 'applied', ...(result as object) })) }
  }
  // A refusal is one change's refusal, in the stored shape of a single change's.
  return { outcome: 'refused', index: jsonInteger(json, 'index'), refusal: changeFromJson(json) }
}

export async function changeAtomically (sequelize: Sequelize, lock: BatchLock, changes: readonly ChangeRequest[], claim: IdempotencyClaim | undefined): Promise<Keyed<BulkOutcome>> {
  const rows = await hotQuery<KeyedRow>(sequelize, BULK, [lock, ...changeBinds(changes), MIN_BALANCE, MAX_BALANCE, ...claimBinds(claim)])
  return toKeyed(rows[0], bulkFromJson)
}
