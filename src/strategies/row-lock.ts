import type { Sequelize } from 'sequelize'
import { hotQuery } from '../db/hot-query.js'
import { MAX_BALANCE, MIN_BALANCE } from '../domain/money.js'
import { toChangeOutcome, type OutcomeRow } from './outcome.js'
import { ledgerFunctionCalls } from './ledger-functions.js'
import type { BalanceStrategy } from './types.js'

/**
 * `row-lock`: SELECT … FOR UPDATE, check, write, journal, inside balance_change_row_lock() (db/migrations/0003),
 * one autocommit statement, so the row lock is held for a single round trip (raw SQL for the same reason as advisory).
 * A transfer (balance_transfer_row_lock, db/migrations/0004) locks both rows FOR UPDATE in ascending id order.
 */
/** The whole change; binds [userId, amount, MIN_BALANCE, MAX_BALANCE]. Exported for bench/'s database ceiling. */
export const ROW_LOCK_CHANGE_SQL = 'SELECT outcome, balance, entry_id FROM balance_change_row_lock($1, $2, $3, $4)'
const ROW_LOCK_CHANGE = { name: 'balance_change_row_lock_v1', text: ROW_LOCK_CHANGE_SQL }

/** The keyed change (db/migrations/0004): claim the key, run balance_change_row_lock(), store the outcome; one round trip. */
export const ROW_LOCK_CHANGE_KEYED_SQL = 'SELECT idempotency, result FROM balance_change_row_lock_keyed($1, $2, $3, $4, $5, $6, $7, $8)'
/** A transfer, keyed or not (db/migrations/0004). */
export const ROW_LOCK_TRANSFER_SQL = 'SELECT idempotency, result FROM balance_transfer_row_lock($1, $2, $3, $4, $5, $6, $7, $8, $9)'

export function rowLockStrategy (sequelize: Sequelize): BalanceStrategy {
  return {
    name: 'row-lock',
    batchLock: 'row',
    ...ledgerFunctionCalls(sequelize, { changeKeyedSql: ROW_LOCK_CHANGE_KEYED_SQL, transferSql: ROW_LOCK_TRANSFER_SQL }),
    async change ({ userId, amount }) {
      // hotQuery, not sequelize.query(): ~40 % less client CPU per change, measured (src/db/hot-query.ts).
      const rows = await hotQuery<OutcomeRow>(sequelize, ROW_LOCK_CHANGE, [userId, amount, MIN_BALANCE, MAX_BALANCE])
      return toChangeOutcome(rows[0])
    },
  }
}
