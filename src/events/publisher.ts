import { randomUUID } from 'node:crypto'
import os from 'node:os'
import { connect, headers, nanos, type JetStreamClient, type JetStreamManager, type NatsConnection } from 'nats'
import pg from 'pg'
import { FEED_PAGE_SQL } from './db.js'
import { positionBefore, type FeedPosition } from './cursor.js'
import { positionOf, toEvent, type EventRow } from './event.js'
import { SideConnection } from './side-connection.js'
import { WakeableSleep } from './wakeable-sleep.js'

/**
 * The publisher: moves events from PostgreSQL to a JetStream stream, in feed order, never on a request's path.
 *
 * One instance publishes at a time: it holds the lease in events_publisher (holder, expires_at), taken with one
 * UPDATE … WHERE holder = me OR expires_at < now() and renewed every round; no session state, so it holds behind
 * PgBouncer in transaction mode. Each round reads up to a batch after the row's cursor with the feed's query (so it
 * never passes an event that commits late, and a user's events go out in seq order), publishes them one after the
 * other (each acknowledged before the next is sent: the stream receives a prefix of the feed, in order), then moves
 * the cursor in ONE statement that also checks the lease (fencing: a publisher that lost its lease cannot move it).
 *
 * Exactly once in the stream: the event id is the Nats-Msg-Id, so a re-publish within the stream's duplicate
 * window is dropped. A new holder (and any holder after a failure) first reads the stream's last message: its
 * position header says how far the stream already is, so events published by a holder that died before it could
 * move the cursor are not sent again, whatever the time since.
 *
 * Nothing the synchronous standby lacks: after reading a page, and before publishing any of it, the round renews the
 * lease once more, and goes on only once that write's commit is acknowledged. With synchronous replication that
 * acknowledgement means the standby has the WAL up to that commit, so every commit the page saw (all written before
 * it) too, even one whose own wait for the standby was cancelled (visible on the primary alone). The connection is
 * the guarded one (src/db/guarded-pg.ts): a lease write whose wait was cancelled fails the round instead of passing
 * for acknowledged. So a failover that promotes the synchronous standby never loses an event the stream holds.
 */
export interface PublisherOptions {
  servers: string[]
  stream: string
  subjectPrefix: string
  batchSize: number
  pollIntervalMs: number
  leaseTtlMs: number
  publishTimeoutMs: number
  retryMaxMs: number
  duplicateWindowS: number
  /** max_age of a stream this publisher creates (EVENTS_RETENTION_HOURS): the stream is bounded like the table. */
  maxAgeHours: number
  statementTimeoutMs: number
  /** The database, as pg connection settings (the publisher has its own connection, named balance-api-events). */
  database: pg.ClientConfig
  /** Unique per process: the lease holder's name. */
  instance?: string
}

export interface PublisherObserver {
  published: (count: number) => void
  /** JetStream acknowledged an event as a duplicate of a message it holds (dropped by its duplicate window). */
  duplicate: () => void
  failed: (stage: string) => void
  stats: (pending: number, lagSeconds: number) => void
}

export interface PublisherLog {
  info: (object: object, message: string) => void
  warn: (object: object, message: string) => void
}

/** The header that carries an event's feed position, read back by a new lease holder. */
export const POSITION_HEADER = 'Balance-Event-Position'
/** Which database the position belongs to: a stream fed by another database is never trusted for positions. */
export const ORIGIN_HEADER = 'Balance-Event-Origin'
/** Outbox size is counted up to this many events (a bounded query once a second); the gauge shows the cap beyond. */
export const PENDING_COUNT_CAP = 100_000
const STATS_INTERVAL_MS = 1_000
/** A publish is never started this close to the lease's end: a successor cannot start while one is in flight. */
const LEASE_MARGIN_MS = 500

const ORIGIN_SQL = `SELECT current_database() || '@' || (SELECT system_identifier::text FROM pg_control_system()) AS origin`
const RENEW_SQL = `
  UPDATE events_publisher SET holder = $1, expires_at = now() + make_interval(secs => $2::double precision / 1000), updated_at = now()
  WHERE id = 1 AND (holder = $1 OR expires_at < now())
  RETURNING cursor_xid::text AS xid, cursor_id AS id, extract(epoch FROM expires_at - now()) * 1000 AS remaining_ms`
/** Moves the cursor forward only, and only while the lease is still this holder's: the fence. */
const ADVANCE_SQL = `
  UPDATE events_publisher SET cursor_xid = $2::xid8, cursor_id = $3::bigint, published = published + $4, updated_at = now()
  WHERE id = 1 AND holder = $1 AND expires_at > now() AND (cursor_xid, cursor_id) < ($2::xid8, $3::bigint)
  RETURNING id`
const STATS_SQL = `
  SELECT (SELECT count(*) FROM (SELECT 1 FROM events e WHERE (e.xid, e.id) > (p.cursor_xid, p.cursor_id) LIMIT ${PENDING_COUNT_CAP}) c) AS pending,
         (SELECT extract(epoch FROM now() - e.created_at) FROM events e WHERE (e.xid, e.id) > (p.cursor_xid, p.cursor_id)
          ORDER BY e.xid, e.id LIMIT 1) AS lag
  FROM events_publisher p WHERE p.id = 1`

interface Lease { cursor: FeedPosition, deadline: number }

export class EventPublisher {
  readonly instance: string
  private nc: NatsConnection | undefined
  private js: JetStreamClient | undefined
  private jsm: JetStreamManager | undefined
  private readonly db: SideConnection
  private origin: string | undefined
  /** True while this process holds the lease and trusts its cursor (false after any failure: read the stream first). */
  private trusted = false
  private stopped = false
  private loop: Promise<void> | undefined
  private readonly pause = new WakeableSleep()
  private statsAt = 0

  constructor (private readonly options: PublisherOptions, private readonly observer: PublisherObserver, private readonly log: PublisherLog) {
    this.instance = options.instance ?? `${os.hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`
    this.db = new SideConnection({
      database: options.database,
      applicationName: 'balance-api-events',
      connectTimeoutMs: options.publishTimeoutMs,
      statementTimeoutMs: options.statementTimeoutMs,
      // A commit whose wait for the synchronous standby was cancelled fails its query (the standby barrier).
      guarded: true,
      onConnect: async (client) => {
        this.origin ??= (await client.query<{ origin: string }>(ORIGIN_SQL)).rows[0]!.origin
      },
    })
  }

  start (): void {
    this.loop ??= this.run()
  }

  /** Ends the loop after its current round; the lease is left to expire (or is renewed by nobody). */
  async stop (): Promise<void> {
    this.stopped = true
    this.pause.wake()
    await this.loop
    await this.closeNats()
    await this.closeDatabase()
  }

  private async run (): Promise<void> {
    let delay = this.options.pollIntervalMs
    while (!this.stopped) {
      let more = false
      try {
        more = await this.round()
        delay = this.options.pollIntervalMs
      } catch (error) {
        this.trusted = false
        this.observer.failed(stageOf(error))
        this.log.warn({ err: error, retryInMs: delay }, 'events publisher round failed')
        await this.dropBroken(error)
        delay = Math.min(delay * 2, this.options.retryMaxMs)
        await this.sleep(delay)
        continue
      }
      if (!more) await this.sleep(delay)
    }
  }

  /** One round; true when a full batch went out (so the next round starts at once). */
  private async round (): Promise<boolean> {
    const lease = await this.renew()
    await this.refreshStats()
    if (lease === undefined) {
      this.trusted = false
      return false
    }
    const js = await this.jetstream()
    let cursor = lease.cursor
    if (!this.trusted) {
      cursor = await this.reconcile(cursor)
      this.trusted = true
    }
    const rows = await this.query<EventRow>(FEED_PAGE_SQL, [cursor.xid, cursor.id, this.options.batchSize])
    // The standby barrier (above): a lease write committed after the page was read, acknowledged, before any publish.
    const confirmed = rows.length === 0 ? lease : await this.renew()
    if (confirmed === undefined) {
      this.trusted = false
      return false
    }
    let sent = 0
    let last: EventRow | undefined
    try {
      for (const row of rows) {
        if (this.stopped || performance.now() > confirmed.deadline) break
        await this.publish(js, row)
        last = row
        sent += 1
      }
    } finally {
      if (last !== undefined) await this.advance(positionOf(last), sent)
    }
    return rows.length === this.options.batchSize && sent === rows.length
  }

  private async publish (js: JetStreamClient, row: EventRow): Promise<void> {
    const event = toEvent(row)
    const h = headers()
    h.set(POSITION_HEADER, `${row.xid}.${row.id}`)
    h.set(ORIGIN_HEADER, this.origin ?? '')
    const ack = await js.publish(`${this.options.subjectPrefix}.${event.userId}`, JSON.stringify(event), {
      msgID: String(event.eventId),
      timeout: this.options.publishTimeoutMs,
      headers: h,
    })
    // After the stream-position check a holder only sends what the stream lacks, so a duplicate means the stream already
    // holds a message with this event id: a cursor behind the stream, or an id the database gave again (an event
    // published from a primary whose commit a failover lost). Dropped by JetStream either way; counted and logged.
    if (ack.duplicate) {
      this.observer.duplicate()
      this.log.warn({ eventId: event.eventId, position: `${row.xid}.${row.id}`, streamSeq: ack.seq }, 'events publisher: JetStream dropped the event as a duplicate of a message already in the stream')
    }
  }

  private async renew (): Promise<Lease | undefined> {
    const started = performance.now()
    const rows = await this.query<{ xid: string, id: string, remaining_ms: string }>(RENEW_SQL, [this.instance, this.options.leaseTtlMs])
    const row = rows[0]
    if (row === undefined) return undefined
    return {
      cursor: { xid: row.xid, id: Number(row.id) },
      deadline: started + Number(row.remaining_ms) - this.options.publishTimeoutMs - LEASE_MARGIN_MS,
    }
  }

  private async advance (position: FeedPosition, count: number): Promise<void> {
    const rows = await this.query(ADVANCE_SQL, [this.instance, position.xid, position.id, count])
    if (rows.length === 0) {
      // Lost the lease meanwhile: whoever holds it now starts from the stream's own last message.
      this.trusted = false
      return
    }
    if (count > 0) this.observer.published(count)
  }

  /** The stream's last message says how far the stream is; the cursor catches up with it. */
  private async reconcile (cursor: FeedPosition): Promise<FeedPosition> {
    const jsm = this.jsm!
    const info = await jsm.streams.info(this.options.stream)
    if (info.state.last_seq === 0) return cursor
    let stored
    try {
      stored = await jsm.streams.getMessage(this.options.stream, { seq: info.state.last_seq })
    } catch {
      return cursor // the last message was removed meanwhile: the duplicate window still guards
    }
    const text = stored.header?.get(POSITION_HEADER) ?? ''
    const match = /^(\d+)\.(\d+)$/.exec(text)
    if (match === null || stored.header?.get(ORIGIN_HEADER) !== this.origin) return cursor
    const position = { xid: match[1]!, id: Number(match[2]) }
    if (!positionBefore(cursor, position)) return cursor
    await this.advance(position, 0)
    if (!this.trusted) this.log.info({ from: cursor, to: position }, 'events publisher: the stream was ahead of the cursor; caught up')
    return position
  }

  private async refreshStats (): Promise<void> {
    if (performance.now() - this.statsAt < STATS_INTERVAL_MS) return
    this.statsAt = performance.now()
    const row = (await this.query<{ pending: string, lag: string | null }>(STATS_SQL, []))[0]
    if (row !== undefined) this.observer.stats(Number(row.pending), row.lag === null ? 0 : Math.max(0, Number(row.lag)))
  }

  private async jetstream (): Promise<JetStreamClient> {
    if (this.js !== undefined && this.nc !== undefined && !this.nc.isClosed()) return this.js
    await this.closeNats()
    const nc = await connect({
      servers: this.options.servers,
      name: `balance-api-events ${this.instance}`,
      timeout: this.options.publishTimeoutMs,
      // Reconnect forever in the background; a publish while disconnected fails after its timeout and is retried.
      reconnect: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: Math.min(1000, this.options.retryMaxMs),
    })
    try {
      const jsm = await nc.jetstreamManager({ timeout: this.options.publishTimeoutMs })
      await this.ensureStream(jsm)
      this.nc = nc
      this.jsm = jsm
      this.js = nc.jetstream({ timeout: this.options.publishTimeoutMs })
      return this.js
    } catch (error) {
      await nc.close().catch(() => {})
      throw error
    }
  }

  private async ensureStream (jsm: JetStreamManager): Promise<void> {
    try {
      await jsm.streams.info(this.options.stream)
    } catch (error) {
      if (!/stream not found/i.test(String((error as Error).message))) throw error
      // JetStream refuses a duplicate window longer than max_age: the window is cut to it.
      const maxAgeMs = this.options.maxAgeHours * 3_600_000
      await jsm.streams.add({
        name: this.options.stream,
        subjects: [`${this.options.subjectPrefix}.*`],
        max_age: nanos(maxAgeMs),
        duplicate_window: nanos(Math.min(this.options.duplicateWindowS * 1000, maxAgeMs)),
      })
      this.log.info({ stream: this.options.stream, subjects: `${this.options.subjectPrefix}.*`, maxAgeHours: this.options.maxAgeHours }, 'events stream created')
    }
  }

  private async query<T> (text: string, values: unknown[]): Promise<T[]> {
    try {
      return await this.db.query<T>(text, values)
    } catch (error) {
      throw error instanceof PublisherDatabaseError ? error : new PublisherDatabaseError(error)
    }
  }

  /** After a failure: a database error drops the connection (it may be broken); NATS reconnects by itself. */
  private async dropBroken (error: unknown): Promise<void> {
    if (stageOf(error) === 'database') await this.closeDatabase()
  }

  private async closeDatabase (): Promise<void> {
    await this.db.close()
  }

  private async closeNats (): Promise<void> {
    const nc = this.nc
    this.nc = undefined
    this.js = undefined
    this.jsm = undefined
    if (nc !== undefined && !nc.isClosed()) await nc.close().catch(() => {})
  }

  private async sleep (ms: number): Promise<void> {
    if (!this.stopped) await this.pause.sleep(ms)
  }
}

/** A failure of the publisher's PostgreSQL work (the connection is dropped and opened again). */
class PublisherDatabaseError extends Error {
  constructor (cause: unknown) {
    super(`events publisher: PostgreSQL: ${String((cause as Error | undefined)?.message ?? cause)}`, { cause })
  }
}

/** Where a round failed, for the errors metric: PostgreSQL or NATS. */
function stageOf (error: unknown): 'database' | 'nats' {
  return error instanceof PublisherDatabaseError ? 'database' : 'nats'
}
