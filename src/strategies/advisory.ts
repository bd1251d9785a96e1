import { QueryTypes, type Sequelize } from 'sequelize'
import { MAX_BALANCE, MIN_BALANCE } from '../domain/money.js'
import { toChangeOutcome, type OutcomeRow } from './outcome.js'
import { ledgerMethods } from './keyed.js'
import type { BalanceStrategy } from './types.js'

/**
 * `advisory` (the default): pg_advisory_xact_lock(userId), read, check, write, journal, commit: all inside
 * balance_change_advisory() (db/migrations/0002), called as one autocommit statement. Raw SQL through Sequelize
 * here because one round trip is the whole lock window; the same steps as separate ORM calls in a managed
 * transaction take five round trips while the lock is held (see bench/REPORT.md).
 * A transfer (balance_transfer_advisory, db/migrations/0004) takes both users' advisory locks in ascending id order.
 */
/** The whole change; binds [userId, amount, MIN_BALANCE, MAX_BALANCE]. Exported for bench/'s database ceiling. */
export const ADVISORY_CHANGE_SQL = 'SELECT outcome, balance, entry_id FROM balance_change_advisory($1, $2, $3, $4)'

/** The keyed change (db/migrations/0004): claim the key, run balance_change_advisory(), store the outcome; one round trip. */
export const ADVISORY_CHANGE_KEYED_SQL = 'SELECT idempotency, result FROM balance_change_advisory_keyed($1, $2, $3, $4, $5, $6, $7, $8)'
/** A transfer, keyed or not (db/migrations/0004). */
export const ADVISORY_TRANSFER_SQL = 'SELECT idempotency, result FROM balance_transfer_advisory($1, $2, $3, $4, $5, $6, $7, $8, $9)'

export function advisoryStrategy (sequelize: Sequelize): BalanceStrategy {
  return {
    name: 'advisory',
    ...ledgerMethods(sequelize, { changeKeyedSql: ADVISORY_CHANGE_KEYED_SQL, transferSql: ADVISORY_TRANSFER_SQL }),
    async change ({ userId, amount }) {
      const rows = await sequelize.query<OutcomeRow>(
        ADVISORY_CHANGE_SQL,
        { bind: [userId, amount, MIN_BALANCE, MAX_BALANCE], type: QueryTypes.SELECT, raw: true },
      )
      return toChangeOutcome(rows[0])
    },
  }
}
