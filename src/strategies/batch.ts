import type { Sequelize } from 'sequelize'
import { hotQuery } from '../db/hot-query.js'
import { MAX_BALANCE, MIN_BALANCE } from '../domain/money.js'
import { changeFromJson, holdOutcomeFromJson, toChangeOutcome } from './outcome.js'
import type { BatchLock, ChangeOutcome, ChangeRequest, HoldOperation, HoldOutcome, IdempotencyClaim, Keyed, Metadata } from './types.js'

/**
 * Several writes to ONE user (changes, new holds, captures without a payee, voids) in one transaction and one round
 * trip: ledger_batch() (db/migrations/0010). Every strategy batches through the same function; what differs is how it
 * locks the user:
 * - 'advisory': pg_advisory_xact_lock(userId), as the advisory strategy's single change and transfers do;
 * - 'row': SELECT … FOR UPDATE, as row-lock's change and every transfer of row-lock and atomic do. atomic's
 *   single change is one conditional UPDATE with no read before its write; a batch must check each change against
 *   the running balance, so it reads once under the row lock (the same lock atomic's UPDATE and transfers take).
 */

/**
 * Binds [lock, userId, ops[], amounts[], holdIds[], lifetimes[], metadata[], keys[], fingerprints[], MIN_BALANCE,
 * MAX_BALANCE, ttlSeconds, purgeLimit] (ledger_batch, db/migrations/0010); one row per item, in input order.
 * Exported for bench/'s batched database ceiling.
 */
export const BATCH_CHANGE_SQL = 'SELECT ord, idempotency, outcome, balance, entry_id, available, result FROM ledger_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)'
const BATCH_CHANGE = { name: 'ledger_batch_v1', text: BATCH_CHANGE_SQL }

/** One write of a batch: a change or a hold operation, keyless or under an idempotency key. */
export interface BatchItem {
  request: ChangeRequest | HoldOperation
  claim?: IdempotencyClaim
}

export function isHoldOperation (request: ChangeRequest | HoldOperation): request is HoldOperation {
  return 'kind' in request
}

/**
 * What each item gets back: a plain outcome for a keyless change, a Keyed outcome for a keyed one, and a Keyed
 * hold outcome for a hold operation (keyless ones are 'executed').
 */
export type BatchAnswer =
  | { keyed: false, outcome: ChangeOutcome }
  | { keyed: true, result: Keyed<ChangeOutcome> }
  | { keyed: 'hold', result: Keyed<HoldOutcome> }

/** One row of ledger_batch(), as pg returns it (BIGINTs as strings). */
export interface BatchRow {
  ord: number
  idempotency: string | null
  outcome: string | null
  balance: string | null
  entry_id: string | null
  available: string | null
  result: unknown
}

function holdAnswer (row: BatchRow): BatchAnswer {
  switch (row.idempotency) {
    case null:
    case 'executed':
    case 'replayed':
      return { keyed: 'hold', result: { idempotency: row.idempotency ?? 'executed', outcome: holdOutcomeFromJson(row.result) } }
    case 'reused':
      return { keyed: 'hold', result: { idempotency: 'reused' } }
    default:
      throw new Error(`invariant: unknown batch idempotency state ${String(row.idempotency)}`)
  }
}

function toAnswer (item: BatchItem, row: BatchRow | undefined, position: number): BatchAnswer {
  if (row === undefined || row.ord !== position) throw new Error(`invariant: batch row ${position} missing or out of order`)
  if (isHoldOperation(item.request)) return holdAnswer(row)
  if (item.claim === undefined) {
    if (row.idempotency !== null || row.outcome === null) throw new Error('invariant: a keyless batch item came back keyed')
    return { keyed: false, outcome: toChangeOutcome({ outcome: row.outcome, balance: row.balance, entry_id: row.entry_id, available: row.available }) }
  }
  switch (row.idempotency) {
    case 'executed':
    case 'replayed':
      return { keyed: true, result: { idempotency: row.idempotency, outcome: changeFromJson(row.result) } }
    case 'reused':
      return { keyed: true, result: { idempotency: 'reused' } }
    default:
      throw new Error(`invariant: unknown batch idempotency state ${String(row.idempotency)}`)
  }
}

/** The columns of one item: what ledger_batch() takes per position. */
function columnsOf (request: ChangeRequest | HoldOperation): [string, number | null, number | null, number | null, Metadata | null] {
  if (!isHoldOperation(request)) return ['change', request.amount, null, null, request.metadata ?? null]
  switch (request.kind) {
    case 'hold':
      return ['hold', request.amount, null, request.expiresInSeconds, request.metadata ?? null]
    case 'capture':
      return ['capture', request.amount ?? null, request.holdId, null, request.metadata ?? null]
    case 'void':
      return ['void', null, request.holdId, null, null]
  }
}

/**
 * Sends the batch and returns its rows, undecoded: all items must name the same user. Keyed items must share one ttl
 * and purge limit (they come from one service's Idempotency settings). Rows come back in item order.
 * Once this resolves the batch has committed: whatever goes wrong after it (decoding the rows) must never send it again.
 */
export async function executeBatch (sequelize: Sequelize, lock: BatchLock, items: BatchItem[]): Promise<BatchRow[]> {
  const first = items[0]
  if (first === undefined) return []
  const userId = first.request.userId
  const claim = items.find((item) => item.claim !== undefined)?.claim
  const ops: string[] = []
  const amounts: Array<number | null> = []
  const holdIds: Array<number | null> = []
  const lifetimes: Array<number | null> = []
  const metadata: Array<string | null> = []
  const keys: Array<string | null> = []
  const fingerprints: Array<string | null> = []
  for (const item of items) {
    if (item.request.userId !== userId) throw new Error('invariant: a batch mixes users')
    const [op, amount, holdId, lifetime, meta] = columnsOf(item.request)
    ops.push(op)
    amounts.push(amount)
    holdIds.push(holdId)
    lifetimes.push(lifetime)
    // A jsonb[] parameter: an array of JSON texts.
    metadata.push(meta === null ? null : JSON.stringify(meta))
    keys.push(item.claim?.key ?? null)
    fingerprints.push(item.claim?.fingerprint ?? null)
  }
  return await hotQuery<BatchRow>(sequelize, BATCH_CHANGE, [
    lock, userId, ops, amounts, holdIds, lifetimes, metadata, keys, fingerprints, MIN_BALANCE, MAX_BALANCE,
    claim?.ttlSeconds ?? null, claim?.purgeLimit ?? null,
  ])
}

/**
 * One item's answer from the committed batch's rows. Throws (an invariant: a bug, never input) for that item alone,
 * so one undecodable row cannot take its neighbours' answers with it.
 */
export function decodeBatchItem (items: BatchItem[], rows: BatchRow[], index: number): BatchAnswer {
  if (rows.length !== items.length) throw new Error(`invariant: a batch of ${items.length} returned ${rows.length} rows`)
  return toAnswer(items[index]!, rows[index], index + 1)
}

/** executeBatch, then every item decoded: answers in item order (for callers that need no per-item outcome). */
export async function runBatch (sequelize: Sequelize, lock: BatchLock, items: BatchItem[]): Promise<BatchAnswer[]> {
  const rows = await executeBatch(sequelize, lock, items)
  return items.map((_, index) => decodeBatchItem(items, rows, index))
}
