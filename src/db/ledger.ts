import type { Sequelize } from 'sequelize'
import { hotQuery } from './hot-query.js'
import { boundedQuery } from './pooler.js'
import { assertBalanceInBounds, toSafeInteger } from '../domain/money.js'
import { claimBinds, jsonDate, jsonField, jsonInteger, metadataFrom, toKeyed, type KeyedRow } from '../strategies/outcome.js'
import type { IdempotencyClaim, Keyed, Metadata } from '../strategies/types.js'

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
  SELECT j.id, j.amount, j.balance_after, j.created_at, j.kind, j.transfer_id, j.hold_id, j.idempotency_key, j.metadata
  FROM users u
  LEFT JOIN LATERAL (
    SELECT e.id, e.amount, e.balance_after, e.created_at, e.kind, e.transfer_id, e.hold_id, e.idempotency_key, e.metadata
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
 * `held` in the same statement, so balance and held come from one snapshot: users.held is Σ the user's holds with
 * status 'active' (kept in the writing transaction); while no active hold has reached its expiry (holds_expire_at is
 * a lower bound of the earliest) that is the answer at once, otherwise the unexpired ones are summed, so a hold reads
 * as released from its expiresAt on, whether or not a write has marked it expired yet (db/migrations/0010).
 */
const READ_USER = {
  name: 'user_read_v2',
  text: `
  SELECT u.id, u.balance, u.created_at, u.updated_at,
    CASE WHEN u.holds_expire_at IS NULL OR u.holds_expire_at > now() THEN u.held
      ELSE (SELECT coalesce(sum(h.amount), 0) FROM holds h WHERE h.user_id = u.id AND h.status = 'active' AND h.expires_at > now())
    END AS held
  FROM users u WHERE u.id = $1`,
}

export interface UserRow {
  id: number
  balance: number
  held: number
  available: number
  createdAt: Date
  updatedAt: Date
}

/** The user, or null when there is none. */
export async function readUser (sequelize: Sequelize, userId: number): Promise<UserRow | null> {
  const rows = await hotQuery<{ id: string, balance: string, held: string, created_at: Date, updated_at: Date }>(sequelize, READ_USER, [userId])
  const row = rows[0]
  if (row === undefined) return null
  const balance = assertBalanceInBounds(toSafeInteger(row.balance, 'balance'))
  const held = assertBalanceInBounds(toSafeInteger(row.held, 'held'))
  if (held > balance) throw new Error(`invariant: user ${userId} holds ${held} of a balance of ${balance}`)
  return { id: toSafeInteger(row.id, 'user id'), balance, held, available: balance - held, createdAt: row.created_at, updatedAt: row.updated_at }
}

/**
 * The balance as of an instant: balance_after of the user's newest entry written at or before it (0 before the first).
 * Exact because, per user, entry time never goes backwards in id order (created_at is clock_timestamp() taken under
 * the user's lock, db/migrations/0010). Walks the (user_id, id DESC) index from the newest entry back to `at`.
 * Binds [userId, at]; no row: no such user.
 */
const BALANCE_AT_SQL = `
  SELECT u.id, (SELECT e.balance_after FROM journal_entries e WHERE e.user_id = u.id AND e.created_at <= $2
                ORDER BY e.id DESC LIMIT 1) AS balance,
               (SELECT e.id FROM journal_entries e WHERE e.user_id = u.id AND e.created_at <= $2
                ORDER BY e.id DESC LIMIT 1) AS entry_id
  FROM users u WHERE u.id = $1`

export async function balanceAt (sequelize: Sequelize, userId: number, at: Date): Promise<{ balance: number, entryId: number | null } | null> {
  const rows = await boundedQuery<{ balance: string | null, entry_id: string | null }>(sequelize, BALANCE_AT_SQL, [userId, at.toISOString()])
  const row = rows[0]
  if (row === undefined) return null
  return {
    balance: row.balance === null ? 0 : assertBalanceInBounds(toSafeInteger(row.balance, 'balance')),
    entryId: row.entry_id === null ? null : toSafeInteger(row.entry_id, 'entry id'),
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

export type EntryKind = 'opening' | 'change' | 'transfer-in' | 'transfer-out' | 'capture' | 'capture-in'

export interface JournalEntryView {
  id: number
  amount: number
  balanceAfter: number
  createdAt: Date
  kind: EntryKind
  transferId: string | null
  holdId: number | null
  idempotencyKey: string | null
  metadata: Metadata | null
}

interface HistoryRow {
  id: string | null
  amount: string
  balance_after: string
  created_at: Date
  kind: EntryKind
  transfer_id: string | null
  hold_id: string | null
  idempotency_key: string | null
  metadata: unknown
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
    holdId: row.hold_id === null ? null : toSafeInteger(row.hold_id, 'hold id'),
    idempotencyKey: row.idempotency_key,
    metadata: metadataFrom(row.metadata),
  }))
}
