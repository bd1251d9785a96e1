import { QueryTypes, type Sequelize } from 'sequelize'
import { MAX_BALANCE, MIN_BALANCE } from '../domain/money.js'
import { toChangeOutcome, type OutcomeRow } from './outcome.js'
import { ledgerMethods } from './keyed.js'
import type { BalanceStrategy } from './types.js'

/**
 * `row-lock`: SELECT … FOR UPDATE, check, write, journal, inside balance_change_row_lock() (db/migrations/0003),
 * one autocommit statement, so the row lock is held for a single round trip (raw SQL for the same reason as advisory).
 * A transfer (balance_transfer_row_lock, db/migrations/0004) locks both rows FOR UPDATE in ascending id order.
 */
/** The whole change; binds [userId, amount, MIN_BALANCE, MAX_BALANCE]. Exported for bench/'s database ceiling. */
export const ROW_LOCK_CHANGE_SQL = 'SELECT outcome, balance, entry_id FROM balance_change_row_lock($1, $2, $3, $4)'

/** The keyed change (db/migrations/0004): claim the key, run balance_change_row_lock(), store the outcome; one round trip. */
export const ROW_LOCK_CHANGE_KEYED_SQL = 'SELECT idempotency, result FROM balance_change_row_lock_keyed($1, $2, $3, $4, $5, $6, $7, $8)'
/** A transfer, keyed or not (db/migrations/0004). */
export const ROW_LOCK_TRANSFER_SQL = 'SELECT idempotency, result FROM balance_transfer_row_lock($1, $2, $3, $4, $5, $6, $7, $8, $9)'

export function rowLockStrategy (sequelize: Sequelize): BalanceStrategy {
  return {
    name: 'row-lock',
    ...ledgerMethods(sequelize, { changeKeyedSql: ROW_LOCK_CHANGE_KEYED_SQL, transferSql: ROW_LOCK_TRANSFER_SQL }),
    async change ({ userId, amount }) {
      const rows = await sequelize.query<OutcomeRow>(
        ROW_LOCK_CHANGE_SQL,
        { bind: [userId, amount, MIN_BALANCE, MAX_BALANCE], type: QueryTypes.SELECT, raw: true },
      )
      return toChangeOutcome(rows[0])
    },
  }
}
