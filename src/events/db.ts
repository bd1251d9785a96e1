import type { Sequelize } from 'sequelize'
import { boundedQuery } from '../db/pooler.js'
import type { FeedPosition } from './cursor.js'
import type { EventRow } from './event.js'

/**
 * The events' SQL (db/migrations/0011-events.ts made the table, the triggers and the publisher's row).
 * Every statement here is one statement, so it is one transaction behind PgBouncer in transaction mode too.
 */
const EVENT_COLUMNS = `e.id, e.xid::text AS xid, e.user_id, e.seq, e.type, e.entry_id, e.amount, e.balance_after,
  e.transfer_id, e.hold_id, e.idempotency_key, e.metadata, e.hold, e.created_at`

/**
 * One page of the global feed after a position, in (xid, id) order, of events whose xid is below the oldest
 * transaction still running (the xmin of this statement's own snapshot). Why it cannot skip an event:
 * every transaction that is running now, or starts later, has an xid ≥ that xmin, and the trigger stores an xid at
 * least as large as its writer's own. So every event not visible to this statement sorts after every event this
 * statement may serve, and a cursor taken from a page is never passed by an event that commits later. Those below
 * the xmin are final: their writers have ended (committed or rolled back), so the set never changes again.
 * A transaction that stays open holds the xmin back: the feed waits for it (docs/events.md).
 * Binds [afterXid, afterId, limit].
 */
export const FEED_PAGE_SQL = `
  SELECT ${EVENT_COLUMNS}
  FROM events e
  WHERE (e.xid, e.id) > ($1::xid8, $2::bigint) AND e.xid < pg_snapshot_xmin(pg_current_snapshot())
  ORDER BY e.xid, e.id
  LIMIT $3`

/**
 * One page of a user's events after a seq. No watermark is needed: a user's seq n + 1 is written under the lock
 * its seq n's transaction held to its commit, so a visible event's predecessors are all visible; the page is a
 * gap-free run. The LEFT JOIN keeps one all-NULL row for a user without (more) events, so no row means no user.
 * Binds [userId, afterSeq, limit].
 */
export const USER_FEED_PAGE_SQL = `
  SELECT e.*
  FROM users u
  LEFT JOIN LATERAL (
    SELECT ${EVENT_COLUMNS}
    FROM events e
    WHERE e.user_id = u.id AND e.seq > $2
    ORDER BY e.seq
    LIMIT $3
  ) e ON true
  WHERE u.id = $1
  ORDER BY e.seq`

export async function feedPage (sequelize: Sequelize, after: FeedPosition, limit: number): Promise<EventRow[]> {
  return await boundedQuery<EventRow>(sequelize, FEED_PAGE_SQL, [after.xid, after.id, limit])
}

/** Up to `limit` events of the user after `afterSeq`; null when the user does not exist. */
export async function userFeedPage (sequelize: Sequelize, userId: number, afterSeq: number, limit: number): Promise<EventRow[] | null> {
  const rows = await boundedQuery<EventRow & { id: string | null }>(sequelize, USER_FEED_PAGE_SQL, [userId, afterSeq, limit])
  if (rows.length === 0) return null
  return rows.filter((row) => row.id !== null)
}

/** The triggers that write events, by table (EVENTS=off disables them). */
export const EVENT_TRIGGERS = {
  journal_entries: ['journal_events', 'journal_events_key'],
  holds: ['holds_events_insert', 'holds_events_update'],
} as const

/** Triggers whose enabled state differs from `enabled`: the switch changes only those. Binds [names, enabled]. */
export const TRIGGERS_TO_SWITCH_SQL = `
  SELECT c.relname AS table, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
  WHERE c.relname IN ('journal_entries', 'holds') AND c.relnamespace = 'public'::regnamespace
    AND t.tgname = ANY($1::text[]) AND (t.tgenabled <> 'D') <> $2::boolean
  ORDER BY c.relname, t.tgname`
