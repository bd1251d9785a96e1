import type { Sequelize } from 'sequelize'
import { hotQuery } from '../db/hot-query.js'
import { MAX_BALANCE, MIN_BALANCE } from '../domain/money.js'
import { toChangeOutcome, type OutcomeRow } from './outcome.js'
import { ledgerFunctionCalls } from './ledger-functions.js'
import type { BalanceStrategy } from './types.js'

/**
 * `advisory` (the default): pg_advisory_xact_lock(userId), read, check, write, journal, commit: all inside
 * balance_change_advisory() (db/migrations/0002; since 0005 a withdrawal the committed balance cannot cover is refused
 * before the lock, since a refusal writes nothing), called as one autocommit statement. Raw SQL through Sequelize
 * here because one round trip is the whole lock window; the same steps as separate ORM calls in a managed
 * transaction take five round trips while the lock is held (see bench/REPORT.md).
 * A transfer (balance_transfer_advisory, db/migrations/0004) takes both users' advisory locks in ascending id order.
 */
/**
 * The whole change (balance_change_locked, db/migrations/0010: held checked too); binds [userId, amount, MIN_BALANCE,
 * MAX_BALANCE, metadata]. Exported for bench/'s database ceiling.
 */
export const ADVISORY_CHANGE_SQL = "SELECT outcome, balance, entry_id, available FROM balance_change_locked('advisory', $1, $2, $3, $4, $5, NULL)"
const ADVISORY_CHANGE = { name: 'balance_change_advisory_v2', text: ADVISORY_CHANGE_SQL }

export function advisoryStrategy (sequelize: Sequelize): BalanceStrategy {
  return {
    name: 'advisory',
    batchLock: 'advisory',
    ...ledgerFunctionCalls(sequelize, 'advisory', 'advisory'),
    async change ({ userId, amount, metadata }) {
      // hotQuery, not sequelize.query(): ~40 % less client CPU per change, measured (src/db/hot-query.ts).
      const rows = await hotQuery<OutcomeRow>(sequelize, ADVISORY_CHANGE, [userId, amount, MIN_BALANCE, MAX_BALANCE, metadata === undefined ? null : JSON.stringify(metadata)])
      return toChangeOutcome(rows[0])
    },
  }
}
