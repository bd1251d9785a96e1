import type { Sequelize } from 'sequelize'
import { boundedQuery } from '../db/pooler.js'
import { positionBefore, type FeedPosition } from './cursor.js'
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
 * The HTTP feed's page: FEED_PAGE_SQL, and in the same statement (one snapshot with any prune) the position of the
 * last event pruned (events_retention). A cursor before it has missed at least that event: no page is read, and the
 * position comes back alone (the route answers 410 CURSOR_EXPIRED, or reads again from it when the reader gave no
 * cursor). The start of the feed is a position like any other. The LEFT JOIN keeps
 * one row with NULL event columns when the page is empty. (The lateral's xid is text: the outer order casts it
 * back, so 99999 stays before 100000.) Binds [afterXid, afterId, limit].
 */
export const CHECKED_FEED_PAGE_SQL = `
  SELECT r.pruned_xid::text AS pruned_xid, r.pruned_id, e.*
  FROM events_retention r
  LEFT JOIN LATERAL (
    SELECT ${EVENT_COLUMNS}
    FROM events e
    WHERE ($1::xid8, $2::bigint) >= (r.pruned_xid, r.pruned_id)
      AND (e.xid, e.id) > ($1::xid8, $2::bigint) AND e.xid < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY e.xid, e.id
    LIMIT $3
  ) e ON true
  WHERE r.id = 1
  ORDER BY e.xid::xid8, e.id`

/**
 * One page of a user's events after a seq. No watermark is needed: a user's seq n + 1 is written under the lock
 * its seq n's transaction held to its commit, so a visible event's predecessors are all visible; the page is a
 * gap-free run. The pruner deletes a seq prefix of each user and keeps the last seq it deleted (events_pruned):
 * an `after` below it has missed events, so no page is read and pruned_seq says where the user's events start.
 * The LEFT JOIN keeps one all-NULL row for a user without (more) events, so no row means no user.
 * Binds [userId, afterSeq, limit].
 */
export const USER_FEED_PAGE_SQL = `
  SELECT t.seq AS pruned_seq, e.*
  FROM users u
  LEFT JOIN events_pruned t ON t.user_id = u.id
  LEFT JOIN LATERAL (
    SELECT ${EVENT_COLUMNS}
    FROM events e
    WHERE e.user_id = u.id AND e.seq > $2 AND $2 >= coalesce(t.seq, 0)
    ORDER BY e.seq
    LIMIT $3
  ) e ON true
  WHERE u.id = $1
  ORDER BY e.seq`

/** A page, or the position of the last event pruned when `after` is before it (those events are gone). */
export type CheckedPage<T> = { rows: EventRow[] } | { expired: T }

export async function feedPage (sequelize: Sequelize, after: FeedPosition, limit: number): Promise<CheckedPage<FeedPosition>> {
  const rows = await boundedQuery<EventRow & { id: string | null, pruned_xid: string, pruned_id: string }>(
    sequelize, CHECKED_FEED_PAGE_SQL, [after.xid, after.id, limit])
  const head = rows[0]
  if (head === undefined) throw new Error('invariant: events_retention has no row')
  const pruned = { xid: head.pruned_xid, id: Number(head.pruned_id) }
  if (positionBefore(after, pruned)) return { expired: pruned }
  return { rows: rows.filter((row) => row.id !== null) }
}

/** Up to `limit` events of the user after `afterSeq`; null when the user does not exist; `expired` past pruning. */
export async function userFeedPage (sequelize: Sequelize, userId: number, afterSeq: number, limit: number): Promise<CheckedPage<number> | null> {
  const rows = await boundedQuery<EventRow & { id: string | null, pruned_seq: string | null }>(sequelize, USER_FEED_PAGE_SQL, [userId, afterSeq, limit])
  const head = rows[0]
  if (head === undefined) return null
  const pruned = head.pruned_seq === null ? 0 : Number(head.pruned_seq)
  if (afterSeq < pruned) return { expired: pruned }
  return { rows: rows.filter((row) => row.id !== null) }
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
