import type { Sequelize } from 'sequelize'
import { hotQuery } from './hot-query.js'
import { boundedQuery } from './pooler.js'
import { assertBalanceInBounds, toSafeInteger } from '../domain/money.js'
import { claimBinds, jsonField, jsonInteger, jsonString, toKeyed, type KeyedRow } from '../strategies/outcome.js'
import type { IdempotencyClaim, Keyed } from '../strategies/types.js'

/**
 * The ledger's SQL that does not depend on the concurrency strategy: creating a user (a new row nobody else can
 * touch until it commits) and reading a user's journal.
 */

/** Binds [balance, key, fingerprint, ttlSeconds, purgeLimit]; key… NULL without a key (db/migrations/0004). */
export const CREATE_USER_SQL = 'SELECT idempotency, result FROM user_create($1, $2, $3, $4, $5)'

/**
 * One page of a user's journal, newest first, in one round trip: the LEFT JOIN keeps one all-NULL row for a user
 * without (more) entries, so "no such user" (no row) and "no entries" (a NULL row) are told apart without a second
 * query. Keyset pagination on the (user_id, id DESC) index: `id < $2`, never OFFSET, so a page costs the same deep
 * in a long history as at its head.
 *
 * Why keyset on id is exact under concurrent writes: every strategy assigns a user's journal ids (nextval in the
 * INSERT) while holding that user's lock (advisory lock, row lock, or the row lock of atomic's conditional UPDATE),
 * and commits before releasing it. So for one user, id order is commit order: an entry not yet visible when a page
 * was read will get, or already has, an id above every entry that was visible. Walking older pages with
 * `id < last seen` therefore neither skips nor repeats an entry, however many writes land meanwhile.
 * Binds [userId, beforeId (exclusive), limit].
 */
export const HISTORY_PAGE_SQL = `
  SELECT j.id, j.amount, j.balance_after, j.created_at, j.kind, j.transfer_id, j.idempotency_key
  FROM users u
  LEFT JOIN LATERAL (
    SELECT e.id, e.amount, e.balance_after, e.created_at, e.kind, e.transfer_id, e.idempotency_key
    FROM journal_entries e
    WHERE e.user_id = u.id AND e.id < $2
    ORDER BY e.id DESC
    LIMIT $3
  ) j ON true
  WHERE u.id = $1
  ORDER BY j.id DESC`

/**
 * One user, one statement: `GET /api/users/:id` is a read clients poll, so it takes hotQuery's path (a prepared
 * statement on the pool's connection) instead of Model.findByPk's per-call machinery, which measured about
 * 8,500 req/s against about 12,000 for one plain statement (autocannon c=100, this machine class). Binds [userId].
 */
const READ_USER = { name: 'user_read_v1', text: 'SELECT id, balance, created_at, updated_at FROM users WHERE id = $1' }

export interface UserRow {
  id: number
  balance: number
  createdAt: Date
  updatedAt: Date
}

/** The user, or null when there is none. */
export async function readUser (sequelize: Sequelize, userId: number): Promise<UserRow | null> {
  const rows = await hotQuery<{ id: string, balance: string, created_at: Date, updated_at: Date }>(sequelize, READ_USER, [userId])
  const row = rows[0]
  if (row === undefined) return null
  return {
    id: toSafeInteger(row.id, 'user id'),
    balance: assertBalanceInBounds(toSafeInteger(row.balance, 'balance')),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  }
}

/** Larger than any BIGSERIAL id: "before" for the first page. */
const NO_CURSOR = '9223372036854775807'

export interface CreatedUser {
  id: number
  balance: number
  createdAt: Date
  updatedAt: Date
  /** The opening journal entry, when the initial balance was > 0. */
  entryId: number | null
}

export type EntryKind = 'opening' | 'change' | 'transfer-in' | 'transfer-out'

export interface JournalEntryView {
  id: number
  amount: number
  balanceAfter: number
  createdAt: Date
  kind: EntryKind
  transferId: string | null
  idempotencyKey: string | null
}

interface HistoryRow {
  id: string | null
  amount: string
  balance_after: string
  created_at: Date
  kind: EntryKind
  transfer_id: string | null
  idempotency_key: string | null
}

function jsonDate (json: unknown, name: string): Date {
  const date = new Date(jsonString(json, name))
  if (Number.isNaN(date.getTime())) throw new Error(`invariant: outcome field ${name} is not a timestamp`)
  return date
}

/** A create-user outcome as stored (user_create in db/migrations/0004). */
export function createdUserFromJson (json: unknown): CreatedUser {
  if (jsonField(json, 'outcome') !== 'applied') throw new Error('invariant: a user creation did not apply')
  return {
    id: jsonInteger(json, 'id'),
    balance: assertBalanceInBounds(jsonInteger(json, 'balance')),
    createdAt: jsonDate(json, 'createdAt'),
    updatedAt: jsonDate(json, 'updatedAt'),
    entryId: jsonField(json, 'entryId') === null ? null : jsonInteger(json, 'entryId'),
  }
}

export async function createUser (sequelize: Sequelize, balance: number, claim?: IdempotencyClaim): Promise<Keyed<CreatedUser>> {
  const rows = await boundedQuery<KeyedRow>(sequelize, CREATE_USER_SQL, [balance, ...claimBinds(claim)])
  return toKeyed(rows[0], createdUserFromJson)
}

/** Up to `limit` entries older than `beforeId` (all when undefined), newest first; null when the user does not exist. */
export async function historyPage (sequelize: Sequelize, userId: number, beforeId: number | undefined, limit: number): Promise<JournalEntryView[] | null> {
  const rows = await boundedQuery<HistoryRow>(sequelize, HISTORY_PAGE_SQL, [userId, beforeId === undefined ? NO_CURSOR : String(beforeId), limit])
  if (rows.length === 0) return null
  return rows.filter((row) => row.id !== null).map((row) => ({
    id: toSafeInteger(row.id ?? NaN, 'entry id'),
    amount: toSafeInteger(row.amount, 'amount'),
    balanceAfter: assertBalanceInBounds(toSafeInteger(row.balance_after, 'balance after')),
    createdAt: row.created_at,
    kind: row.kind,
    transferId: row.transfer_id,
    idempotencyKey: row.idempotency_key,
  }))
}
