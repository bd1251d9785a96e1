import type { Sequelize } from 'sequelize'
import { hotQuery } from './hot-query.js'
import { MAX_BALANCE, MIN_BALANCE } from '../domain/money.js'
import { changeFromJson, claimBinds, jsonField, jsonInteger, toKeyed, type KeyedRow } from '../strategies/outcome.js'
import type { BatchLock, ChangeOutcome, ChangeRequest, IdempotencyClaim, Keyed } from '../strategies/types.js'

/**
 * An atomic bulk change: every change, to any users, in ONE transaction and one round trip, or none
 * (ledger_bulk(), db/migrations/0012). Strategy-independent SQL like creating a user: what differs per strategy is
 * only the lock (`batchLock`: advisory locks then row locks, or row locks), in the order every other write takes them.
 * Binds [lock, userIds[], amounts[], metadata[], MIN_BALANCE, MAX_BALANCE, key, fingerprint, ttlSeconds, purgeLimit].
 */
const BULK = { name: 'ledger_bulk_v1', text: 'SELECT idempotency, result FROM ledger_bulk($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)' }

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
  const rows = await hotQuery<KeyedRow>(sequelize, BULK, [
    lock,
    changes.map((change) => change.userId),
    changes.map((change) => change.amount),
    // A jsonb[] parameter: an array of JSON texts.
    changes.map((change) => (change.metadata === undefined ? null : JSON.stringify(change.metadata))),
    MIN_BALANCE, MAX_BALANCE, ...claimBinds(claim),
  ])
  return toKeyed(rows[0], bulkFromJson)
}
