import { randomUUID } from 'node:crypto'
import os from 'node:os'
import pg from 'pg'
import { SideConnection } from './side-connection.js'
import { WakeableSleep } from './wakeable-sleep.js'

/**
 * The pruner: deletes events older than the retention, never on a request's path (its own connection, named
 * balance-api-events-pruner, opened for a round and closed after it unless a backlog is draining, and its own
 * timer), so the events table stays bounded by the retention window.
 *
 * What it deletes is always a prefix of the feed, in (xid, id) order, up to EVENTS_PRUNE_BATCH events per statement:
 * the events before the first one that is still younger than the retention, below the feed's watermark (final: no
 * late commit can land in the prefix), and at or before the publisher's cursor whenever a publisher is in use (so an
 * event not yet in the stream is never deleted). In the same statement it keeps, per user, the last event deleted
 * (events_pruned: where the user's seq goes on once none of its events is left; the triggers read it) and moves the
 * feed's pruned position (events_retention: a feed cursor before it answers 410 CURSOR_EXPIRED). db/migrations/
 * 0013-events-retention.ts says why a prefix keeps every user's seq and the feed exact.
 *
 * One instance prunes at a time: the lease in events_retention (holder, expires_at), taken with one UPDATE … WHERE
 * holder = me OR expires_at < now() and checked again inside the delete (a pruner that lost it deletes nothing). No
 * session state, so it holds behind PgBouncer in transaction mode; it needs no broker. The lease outlives a round's
 * pause (interval + EVENTS_LEASE_TTL_MS), so the holder keeps it; another instance takes over that long after the
 * holder stopped.
 */
export interface PrunerOptions {
  retentionHours: number
  batchSize: number
  intervalMs: number
  leaseTtlMs: number
  statementTimeoutMs: number
  connectTimeoutMs: number
  /** This instance runs a publisher (EVENTS_NATS_URL set): the publisher's cursor bounds what is deleted. */
  publisher: boolean
  database: pg.ClientConfig
  instance?: string
}

export interface PrunerObserver {
  pruned: (count: number) => void
  failed: () => void
  stats: (rows: number, oldestAgeSeconds: number) => void
}

export interface PrunerLog {
  warn: (object: object, message: string) => void
}

export interface PruneRound {
  /** This instance held the lease (and so was the one to delete). */
  held: boolean
  deleted: number
}

/** The events table's size when PostgreSQL has no estimate yet (never analyzed) is counted up to this. */
export const ROWS_COUNT_CAP = 100_000
/** After a round that deleted a full batch, the next one starts after this pause (the backlog drains in chunks). */
const DRAIN_PAUSE_MS = 50

const LEASE_SQL = `
  UPDATE events_retention SET holder = $1, expires_at = now() + make_interval(secs => $2::double precision / 1000), updated_at = now()
  WHERE id = 1 AND (holder = $1 OR expires_at < now())
  RETURNING id`

/**
 * One bounded prune. Binds [holder, retentionHours, batch, publisherHere].
 * - lease: the fence; without it the head is empty and nothing is deleted.
 * - guard: the publisher's cursor bounds the prune when this instance publishes, or when any publisher renewed its
 *   lease within the retention (an instance with EVENTS_NATS_URL elsewhere on this database): nothing after the
 *   cursor goes. A database that has had no publisher for a whole retention prunes by age alone.
 * - head: up to `batch` events from the feed's start, below the watermark (final).
 * - bound: the last head event before the first one still younger than the retention (created_at is not monotonic
 *   in feed order by a few milliseconds: stopping at the first young one keeps the deleted set a prefix).
 * - del, tombstones, moved: delete the prefix, keep each user's last deleted event, move the pruned position.
 */
const PRUNE_SQL = `
  WITH lease AS (
    SELECT 1 FROM events_retention r WHERE r.id = 1 AND r.holder = $1 AND r.expires_at > now()
  ), guard AS (
    SELECT p.cursor_xid, p.cursor_id, ($4::boolean OR p.holder IS NOT NULL AND p.updated_at > now() - make_interval(hours => $2::int)) AS applies
    FROM events_publisher p WHERE p.id = 1
  ), head AS (
    SELECT e.xid, e.id, e.created_at
    FROM events e, guard g
    WHERE EXISTS (SELECT 1 FROM lease)
      AND e.xid < pg_snapshot_xmin(pg_current_snapshot())
      AND (NOT g.applies OR (e.xid, e.id) <= (g.cursor_xid, g.cursor_id))
    ORDER BY e.xid, e.id
    LIMIT $3::int
  ), young AS (
    SELECT h.xid, h.id FROM head h WHERE h.created_at >= now() - make_interval(hours => $2::int) ORDER BY h.xid, h.id LIMIT 1
  ), doomed AS (
    SELECT h.id FROM head h WHERE NOT EXISTS (SELECT 1 FROM young y WHERE (h.xid, h.id) >= (y.xid, y.id))
  ), del AS (
    DELETE FROM events e USING doomed d WHERE e.id = d.id
    RETURNING e.xid, e.id, e.user_id, e.seq, e.balance_after
  ), tombstones AS (
    INSERT INTO events_pruned AS t (user_id, seq, xid, balance_after)
    SELECT DISTINCT ON (d.user_id) d.user_id, d.seq, d.xid, d.balance_after FROM del d ORDER BY d.user_id, d.seq DESC
    ON CONFLICT (user_id) DO UPDATE SET seq = excluded.seq, xid = excluded.xid, balance_after = excluded.balance_after, pruned_at = now()
      WHERE excluded.seq > t.seq
    RETURNING 1
  ), moved AS (
    UPDATE events_retention r SET pruned_xid = m.xid, pruned_id = m.id, pruned = r.pruned + m.n, updated_at = now()
    FROM (SELECT d.xid, d.id, count(*) OVER () AS n FROM del d ORDER BY d.xid DESC, d.id DESC LIMIT 1) m
    WHERE r.id = 1 AND (m.xid, m.id) > (r.pruned_xid, r.pruned_id)
    RETURNING 1
  )
  SELECT (SELECT count(*) FROM del) AS deleted, (SELECT count(*) FROM tombstones) AS users, (SELECT count(*) FROM moved) AS moved`

/**
 * The table's size, cheap: PostgreSQL's live-row estimate (pg_class.reltuples, kept by autovacuum and ANALYZE), or a
 * count up to ROWS_COUNT_CAP while it has none; and the age of the first event in feed order (the oldest one kept,
 * to within the milliseconds created_at and feed order may differ by).
 */
const STATS_SQL = `
  SELECT CASE WHEN c.reltuples >= 0 THEN c.reltuples::bigint
              ELSE (SELECT count(*) FROM (SELECT 1 FROM events LIMIT ${ROWS_COUNT_CAP}) x) END AS rows,
         (SELECT extract(epoch FROM now() - e.created_at) FROM events e ORDER BY e.xid, e.id LIMIT 1) AS oldest
  FROM pg_class c WHERE c.oid = 'events'::regclass`

export class EventPruner {
  readonly instance: string
  private readonly db: SideConnection
  private stopped = false
  private loop: Promise<void> | undefined
  private readonly pause = new WakeableSleep()
  private running: Promise<PruneRound> | undefined

  constructor (private readonly options: PrunerOptions, private readonly observer: PrunerObserver, private readonly log: PrunerLog) {
    this.instance = options.instance ?? `${os.hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`
    this.db = new SideConnection({
      database: options.database,
      applicationName: 'balance-api-events-pruner',
      connectTimeoutMs: options.connectTimeoutMs,
      statementTimeoutMs: options.statementTimeoutMs,
      guarded: false,
    })
  }

  /** The first round runs one interval after start, then one every interval. */
  start (): void {
    this.loop ??= this.run()
  }

  async stop (): Promise<void> {
    this.stopped = true
    this.pause.wake()
    await this.loop
    await this.running?.catch(() => {})
    await this.closeDatabase()
  }

  /** One round now: take (or renew) the lease, delete one bounded chunk if held, refresh the gauges. */
  async pruneOnce (): Promise<PruneRound> {
    // Never two rounds of this instance at once (the timer's and a caller's).
    while (this.running !== undefined) await this.running.catch(() => {})
    const round = this.round()
    this.running = round
    try {
      return await round
    } finally {
      this.running = undefined
    }
  }

  private async run (): Promise<void> {
    let delay = this.options.intervalMs
    while (!this.stopped) {
      await this.sleep(delay)
      if (this.stopped) break
      try {
        const round = await this.pruneOnce()
        const draining = round.deleted === this.options.batchSize
        delay = draining ? DRAIN_PAUSE_MS : this.options.intervalMs
        // A round a minute needs no backend held in between: the connection is kept only while a backlog drains.
        if (!draining) await this.closeDatabase()
      } catch (error) {
        this.observer.failed()
        this.log.warn({ err: error, retryInMs: this.options.intervalMs }, 'events pruner round failed')
        await this.closeDatabase()
        delay = this.options.intervalMs
      }
    }
  }

  private async round (): Promise<PruneRound> {
    const { retentionHours, batchSize, intervalMs, leaseTtlMs, publisher } = this.options
    const held = (await this.query(LEASE_SQL, [this.instance, intervalMs + leaseTtlMs])).length > 0
    let deleted = 0
    if (held) {
      const row = (await this.query<{ deleted: string }>(PRUNE_SQL, [this.instance, retentionHours, batchSize, publisher]))[0]
      deleted = Number(row?.deleted ?? 0)
      if (deleted > 0) this.observer.pruned(deleted)
    }
    const stats = (await this.query<{ rows: string, oldest: string | null }>(STATS_SQL, []))[0]
    if (stats !== undefined) this.observer.stats(Number(stats.rows), stats.oldest === null ? 0 : Math.max(0, Number(stats.oldest)))
    return { held, deleted }
  }

  private async query<T> (text: string, values: unknown[]): Promise<T[]> {
    return await this.db.query<T>(text, values)
  }

  private async closeDatabase (): Promise<void> {
    await this.db.close()
  }

  private async sleep (ms: number): Promise<void> {
    if (!this.stopped) await this.pause.sleep(ms)
  }
}
