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
/** The whole change; binds [userId, amount, MIN_BALANCE, MAX_BALANCE]. Exported for bench/'s database ceiling. */
export const ADVISORY_CHANGE_SQL = 'SELECT outcome, balance, entry_id FROM balance_change_advisory($1, $2, $3, $4)'
const ADVISORY_CHANGE = { name: 'balance_change_advisory_v1', text: ADVISORY_CHANGE_SQL }

/** The keyed change (db/migrations/0004): claim the key, run balance_change_advisory(), store the outcome; one round trip. */
export const ADVISORY_CHANGE_KEYED_SQL = 'SELECT idempotency, result FROM balance_change_advisory_keyed($1, $2, $3, $4, $5, $6, $7, $8)'
/** A transfer, keyed or not (db/migrations/0004). */
export const ADVISORY_TRANSFER_SQL = 'SELECT idempotency, result FROM balance_transfer_advisory($1, $2, $3, $4, $5, $6, $7, $8, $9)'

export function advisoryStrategy (sequelize: Sequelize): BalanceStrategy {
  return {
    name: 'advisory',
    batchLock: 'advisory',
    ...ledgerFunctionCalls(sequelize, { changeKeyedSql: ADVISORY_CHANGE_KEYED_SQL, transferSql: ADVISORY_TRANSFER_SQL }),
    async change ({ userId, amount }) {
      // hotQuery, not sequelize.query(): ~40 % less client CPU per change, measured (src/db/hot-query.ts).
      const rows = await hotQuery<OutcomeRow>(sequelize, ADVISORY_CHANGE, [userId, amount, MIN_BALANCE, MAX_BALANCE])
      return toChangeOutcome(rows[0])
    },
  }
}
