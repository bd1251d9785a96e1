import type { Sequelize } from 'sequelize'
import { boundedQuery } from '../db/pooler.js'
import { MAX_BALANCE, MIN_BALANCE } from '../domain/money.js'
import { changeFromJson, claimBinds, toKeyed, transferFromJson, type KeyedRow } from './outcome.js'
import type { ChangeRequest, IdempotencyClaim, Keyed, ChangeOutcome, TransferOutcome, TransferRequest } from './types.js'

/**
 * The SQL of the keyed change and of the transfer, per strategy. Every strategy calls its own functions from
 * db/migrations/0004 the same way, so the calling code lives here once; what differs (the locking) lives in the SQL.
 */
export interface LedgerFunctions {
  /** Binds [userId, amount, MIN_BALANCE, MAX_BALANCE, key, fingerprint, ttlSeconds, purgeLimit]. */
  changeKeyedSql: string
  /** Binds [fromUserId, toUserId, amount, MIN_BALANCE, MAX_BALANCE, key, fingerprint, ttlSeconds, purgeLimit] (key… NULL: no key). */
  transferSql: string
}

async function runKeyed<T> (sequelize: Sequelize, sql: string, bind: unknown[], parse: (json: unknown) => T): Promise<Keyed<T>> {
  // boundedQuery: behind PgBouncer its timeouts travel with it (LOCAL, same round trip), as the hot path's do.
  const rows = await boundedQuery<KeyedRow>(sequelize, sql, bind)
  return toKeyed(rows[0], parse)
}

export function ledgerFunctionCalls (sequelize: Sequelize, functions: LedgerFunctions): {
  changeKeyed: (request: ChangeRequest, claim: IdempotencyClaim) => Promise<Keyed<ChangeOutcome>>
  transfer: (request: TransferRequest, claim?: IdempotencyClaim) => Promise<Keyed<TransferOutcome>>
} {
  return {
    async changeKeyed ({ userId, amount }, claim) {
      return await runKeyed(sequelize, functions.changeKeyedSql,
        [userId, amount, MIN_BALANCE, MAX_BALANCE, ...claimBinds(claim)], changeFromJson)
    },
    async transfer ({ fromUserId, toUserId, amount }, claim) {
      return await runKeyed(sequelize, functions.transferSql,
        [fromUserId, toUserId, amount, MIN_BALANCE, MAX_BALANCE, ...claimBinds(claim)], transferFromJson)
    },
  }
}
