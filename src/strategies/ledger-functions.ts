import type { Sequelize } from 'sequelize'
import { boundedQuery } from '../db/pooler.js'
import { MAX_BALANCE, MIN_BALANCE } from '../domain/money.js'
import type { StrategyName } from '../config.js'
import { runBatch } from './batch.js'
import { changeFromJson, claimBinds, holdOutcomeFromJson, toKeyed, transferFromJson, type KeyedRow } from './outcome.js'
import type {
  BalanceStrategy, BatchLock, CaptureToRequest, ChangeOutcome, ChangeRequest, HoldOperation, HoldOutcome, IdempotencyClaim,
  Keyed, TransferOutcome, TransferRequest,
} from './types.js'

/**
 * The SQL every strategy calls the same way (db/migrations/0010), so the calling code lives here once; what differs
 * (the locking) lives in the SQL, chosen by the strategy's name or its batch lock:
 * - the keyed change: claim, change (the key written by the journal INSERT), store; one round trip;
 * - the transfer, keyed or not;
 * - hold operations that need only the holder's lock: ledger_batch() with one item, the same statement group
 *   commit sends for many;
 * - a capture that pays another user: hold_capture_to(), both users locked in ascending id order.
 */

/** Binds [strategy, userId, amount, MIN_BALANCE, MAX_BALANCE, metadata, key, fingerprint, ttlSeconds, purgeLimit]. */
export const CHANGE_KEYED_SQL = 'SELECT idempotency, result FROM balance_change_keyed($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)'
/** Binds [strategy, fromUserId, toUserId, amount, MIN_BALANCE, MAX_BALANCE, metadata, key, fingerprint, ttl, purge] (key… NULL: no key). */
export const TRANSFER_SQL = 'SELECT idempotency, result FROM balance_transfer($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)'
/** Binds [lock, holdId, amount (NULL: all), toUserId, MIN_BALANCE, MAX_BALANCE, metadata, key, fingerprint, ttl, purge]. */
export const CAPTURE_TO_SQL = 'SELECT idempotency, result FROM hold_capture_to($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)'

async function runKeyed<T> (sequelize: Sequelize, sql: string, bind: unknown[], parse: (json: unknown) => T): Promise<Keyed<T>> {
  // boundedQuery: behind PgBouncer its timeouts travel with it (LOCAL, same round trip), as the hot path's do.
  const rows = await boundedQuery<KeyedRow>(sequelize, sql, bind)
  return toKeyed(rows[0], parse)
}

function metadataBind (metadata: Record<string, string> | undefined): string | null {
  return metadata === undefined ? null : JSON.stringify(metadata)
}

export function ledgerFunctionCalls (sequelize: Sequelize, strategy: StrategyName, lock: BatchLock): Pick<BalanceStrategy, 'changeKeyed' | 'transfer' | 'holdOperation' | 'captureTo'> {
  return {
    async changeKeyed ({ userId, amount, metadata }: ChangeRequest, claim: IdempotencyClaim): Promise<Keyed<ChangeOutcome>> {
      return await runKeyed(sequelize, CHANGE_KEYED_SQL,
        [strategy, userId, amount, MIN_BALANCE, MAX_BALANCE, metadataBind(metadata), ...claimBinds(claim)], changeFromJson)
    },
    async transfer ({ fromUserId, toUserId, amount, metadata }: TransferRequest, claim?: IdempotencyClaim): Promise<Keyed<TransferOutcome>> {
      return await runKeyed(sequelize, TRANSFER_SQL,
        [strategy, fromUserId, toUserId, amount, MIN_BALANCE, MAX_BALANCE, metadataBind(metadata), ...claimBinds(claim)], transferFromJson)
    },
    async holdOperation (operation: HoldOperation, claim?: IdempotencyClaim): Promise<Keyed<HoldOutcome>> {
      const [answer] = await runBatch(sequelize, lock, [claim === undefined ? { request: operation } : { request: operation, claim }])
      if (answer === undefined || answer.keyed !== 'hold') throw new Error('invariant: a hold operation got a change answer')
      return answer.result
    },
    async captureTo ({ holdId, toUserId, amount, metadata }: CaptureToRequest, claim?: IdempotencyClaim): Promise<Keyed<HoldOutcome>> {
      return await runKeyed(sequelize, CAPTURE_TO_SQL,
        [lock, holdId, amount ?? null, toUserId, MIN_BALANCE, MAX_BALANCE, metadataBind(metadata), ...claimBinds(claim)], holdOutcomeFromJson)
    },
  }
}
