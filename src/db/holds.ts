import type { Sequelize } from 'sequelize'
import { hotQuery } from './hot-query.js'
import { boundedQuery } from './pooler.js'
import { holdFromJson } from '../strategies/outcome.js'
import type { HoldStatus, HoldView } from '../strategies/types.js'

/**
 * Reads of holds (db/migrations/0010). Every read renders a hold with hold_json() at the statement's instant, so an
 * active hold past its expiresAt reads as 'expired' from that instant on, whether or not a write has marked it.
 */

/** A hold's holder never changes: group commit routes a capture or void into the holder's lane with this. */
const HOLD_OWNER = { name: 'hold_owner_v1', text: 'SELECT user_id FROM holds WHERE id = $1' }

export async function holdOwner (sequelize: Sequelize, holdId: number): Promise<number | null> {
  const rows = await hotQuery<{ user_id: string }>(sequelize, HOLD_OWNER, [holdId])
  const row = rows[0]
  return row === undefined ? null : Number(row.user_id)
}

const READ_HOLD_SQL = 'SELECT hold_json(h, now()) AS hold FROM holds h WHERE h.id = $1'

export async function readHold (sequelize: Sequelize, holdId: number): Promise<HoldView | null> {
  const rows = await boundedQuery<{ hold: unknown }>(sequelize, READ_HOLD_SQL, [holdId])
  const row = rows[0]
  return row === undefined ? null : holdFromJson(row.hold)
}

/** Which holds a status filter selects, judged at the statement's instant (expiry counted from expiresAt). */
const STATUS_FILTER: Record<HoldStatus | 'any', string> = {
  any: 'true',
  active: "h.status = 'active' AND h.expires_at > now()",
  expired: "(h.status = 'expired' OR (h.status = 'active' AND h.expires_at <= now()))",
  captured: "h.status = 'captured'",
  voided: "h.status = 'voided'",
}

/**
 * One page of a user's holds, newest first, keyset on the (user_id, id DESC) index like the journal's history: hold
 * ids are assigned under the holder's lock, so a page walk neither skips nor repeats. The LEFT JOIN keeps one all-NULL
 * row for a user with no (more) holds, so "no such user" is no row. Binds [userId, beforeId (exclusive), limit].
 */
function holdsPageSql (status: HoldStatus | 'any'): string {
  return `
  SELECT j.hold
  FROM users u
  LEFT JOIN LATERAL (
    SELECT h.id, hold_json(h, now()) AS hold FROM holds h
    WHERE h.user_id = u.id AND h.id < $2 AND ${STATUS_FILTER[status]}
    ORDER BY h.id DESC
    LIMIT $3
  ) j ON true
  WHERE u.id = $1
  ORDER BY j.id DESC`
}

const NO_CURSOR = '9223372036854775807'

/** Up to `limit` holds older than `beforeId`, newest first; null when the user does not exist. */
export async function holdsPage (sequelize: Sequelize, userId: number, status: HoldStatus | 'any', beforeId: number | undefined, limit: number): Promise<HoldView[] | null> {
  const rows = await boundedQuery<{ hold: unknown }>(sequelize, holdsPageSql(status),
    [userId, beforeId === undefined ? NO_CURSOR : String(beforeId), limit])
  if (rows.length === 0) return null
  return rows.filter((row) => row.hold !== null).map((row) => holdFromJson(row.hold))
}
