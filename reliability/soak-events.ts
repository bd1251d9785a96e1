import { readFeed, readStream, rebuildReport, type RebuildReport } from '../src/events/consumer.js'
import { diffWithDatabase, EVENT_FINGERPRINTS_SQL, UNMATCHED_JOURNAL_EVENTS_SQL } from '../src/events/rebuild.js'
import type { NatsServer } from '../src/tooling/nats-server.js'
import type { ResilientClient } from './resilient-client.js'
import type { EventsSummary, RebuildCheck } from './soak-summary.js'

/**
 * The soak's --events: its own nats-server with JetStream, every instance publishing by lease, and after the load the
 * exactness checks of docs/events.md against the final database (on --ha, the primary after the failovers):
 * the outbox drained; every balance rebuilt from the stream alone and from the HTTP feed alone equals the database;
 * per user seq 1..n without gap or duplicate; the stream holds each event exactly once (messages = events, no
 * duplicate id); every event the stream or the feed holds is the database's own (same user, seq, amount, balance
 * after) and none of the database's is missing; journal entries and events agree one to one (no event for a refused
 * or rolled-back change).
 */
export const EVENTS_STREAM = 'BALANCE_EVENTS'
/** Most time the outbox may take to drain after the load (the publisher catches up at thousands of events a second). */
const DRAIN_TIMEOUT_MS = 60_000
const POLL_MS = 100
/** Most failover time the publisher's return is looked for in (the load may end first). */
const RESUME_TIMEOUT_MS = 60_000
const SAMPLES = 10

const PUBLISHER_SQL = `SELECT holder, published::text AS published FROM events_publisher WHERE id = 1`
const PENDING_SQL = `SELECT count(*)::int AS n FROM events e, events_publisher p WHERE p.id = 1 AND (e.xid, e.id) > (p.cursor_xid, p.cursor_id)`

/** The instances' settings: a short lease, so a holder whose database connection went away is replaced quickly. */
export function eventsEnv (nats: NatsServer): Record<string, string> {
  return {
    EVENTS_NATS_URL: nats.url,
    EVENTS_STREAM,
    EVENTS_LEASE_TTL_MS: '3000',
    EVENTS_POLL_INTERVAL_MS: '50',
    EVENTS_RETRY_MAX_MS: '1000',
    EVENTS_PUBLISH_TIMEOUT_MS: '1000',
  }
}

const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

async function publisherRow (admin: ResilientClient): Promise<{ holder: string | null, published: number } | undefined> {
  const row = (await admin.query<{ holder: string | null, published: string }>(PUBLISHER_SQL)).rows[0]
  return row === undefined ? undefined : { holder: row.holder, published: Number(row.published) }
}

/** The lease holder just before a primary kill (undefined without --events). */
export async function publisherBefore (admin: ResilientClient): Promise<string | null> {
  return (await publisherRow(admin))?.holder ?? null
}

/**
 * After a failover: the moment the publisher moves the cursor again on the new primary, in seconds after the kill,
 * and whether another instance took the lease. Polled from the moment the new primary answers: its first read is the
 * cursor as the new primary got it, the next different one the first advance made there (an upper bound by one
 * poll; an advance made before the first read would show as the next one's, later).
 */
export async function publisherResumed (admin: ResilientClient, killedAt: number, holderBefore: string | null): Promise<{ resumedS: number | null, holderChanged: boolean | null }> {
  const first = await publisherRow(admin)
  const deadline = Date.now() + RESUME_TIMEOUT_MS
  while (first !== undefined && Date.now() < deadline) {
    await sleep(POLL_MS)
    const now = await publisherRow(admin)
    if (now !== undefined && now.published > first.published) {
      return { resumedS: Math.round((Date.now() - killedAt) / 100) / 10, holderChanged: now.holder !== holderBefore }
    }
  }
  return { resumedS: null, holderChanged: null }
}

/** Σ events_publish_duplicates_total over the instances (since each one's start); null when one does not answer. */
async function duplicatesDropped (urls: string[]): Promise<number | null> {
  let sum = 0
  for (const url of urls) {
    try {
      const response = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(10_000) })
      const value = /^events_publish_duplicates_total (\d+)$/m.exec(await response.text())?.[1]
      if (response.status !== 200 || value === undefined) return null
      sum += Number(value)
    } catch {
      return null
    }
  }
  return sum
}

function check (report: RebuildReport): RebuildCheck {
  return {
    events: report.events,
    duplicates: report.duplicates,
    users: report.users,
    checked: report.checked,
    behind: report.behind,
    problems: report.problems,
    mismatches: report.mismatches,
  }
}

/**
 * The checks, once the load is over. `databaseUrl` reaches the final primary directly; the feed is read from the first instance,
 * the duplicate counter from every one.
 * Every wrong figure is a violation, named; the summary keeps the figures either way.
 */
export async function checkEvents (options: { admin: ResilientClient, databaseUrl: string, nats: NatsServer, instanceUrls: string[], loadEnded: number, fail: (text: string) => void, log: (line: string) => void }): Promise<EventsSummary> {
  const { admin, fail } = options
  // 1. The outbox drained: the publisher's cursor past every event.
  let pending = Number((await admin.query<{ n: number }>(PENDING_SQL)).rows[0]?.n)
  const drainDeadline = Date.now() + DRAIN_TIMEOUT_MS
  while (pending > 0 && Date.now() < drainDeadline) {
    await sleep(POLL_MS)
    pending = Number((await admin.query<{ n: number }>(PENDING_SQL)).rows[0]?.n)
  }
  const drainS = Math.round((Date.now() - options.loadEnded) / 100) / 10
  if (pending > 0) fail(`events: ${pending} events still not in the stream ${DRAIN_TIMEOUT_MS / 1000} s after the load (the publisher's cursor did not catch up)`)
  options.log(`events: outbox ${pending === 0 ? 'drained' : `NOT drained (${pending} pending)`} ${drainS} s after the load; reading the stream and the feed`)

  // 2. What the database holds, and both sources read to their end.
  const fingerprints = new Map((await admin.query<{ id: string, fingerprint: string }>(EVENT_FINGERPRINTS_SQL)).rows.map((row) => [Number(row.id), row.fingerprint]))
  const database = fingerprints.size
  const stream = await readStream([options.nats.url], EVENTS_STREAM)
  const feed = await readFeed({ baseUrl: options.instanceUrls[0]! })
  const fromStream = check(await rebuildReport('stream', stream.events, options.databaseUrl))
  const fromFeed = check(await rebuildReport('feed', feed, options.databaseUrl))
  const streamDiff = diffWithDatabase(stream.events, fingerprints)
  const feedDiff = diffWithDatabase(feed, fingerprints)
  const unmatchedJournal = Number((await admin.query<{ n: string }>(UNMATCHED_JOURNAL_EVENTS_SQL)).rows[0]?.n)
  const publisher = await publisherRow(admin)
  const publishDuplicates = await duplicatesDropped(options.instanceUrls)

  // 3. Each figure exact.
  if (stream.messages !== database) fail(`events: the stream holds ${stream.messages} messages, the database ${database} events (each event must be in it exactly once)`)
  if (streamDiff.notInDatabase.length > 0) {
    // The one way the stream can hold what the database does not: an event published from a primary whose commit the
    // failover lost (visible there before its standby had it). Named with its ids, never folded into a count.
    fail(`events: ${streamDiff.notInDatabase.length} stream events the final database does not hold as published (ids ${streamDiff.notInDatabase.slice(0, SAMPLES).join(', ')}): ` +
      'published from a primary that lost their commit in a failover, or a stream from another database')
  }
  if (streamDiff.missing > 0) fail(`events: ${streamDiff.missing} database events are not in the stream`)
  if (feedDiff.notInDatabase.length > 0) fail(`events: the feed served ${feedDiff.notInDatabase.length} events the database does not hold (ids ${feedDiff.notInDatabase.slice(0, SAMPLES).join(', ')})`)
  if (feedDiff.missing > 0) fail(`events: ${feedDiff.missing} database events the feed did not serve`)
  for (const [source, rebuilt] of [['stream', fromStream], ['feed', fromFeed]] as const) {
    if (rebuilt.duplicates > 0) fail(`events: ${rebuilt.duplicates} events seen twice in the ${source}`)
    for (const problem of rebuilt.problems) fail(`events: ${source}: ${problem}`)
    for (const mismatch of rebuilt.mismatches) fail(`events: rebuilt from the ${source}: ${mismatch}`)
    if (rebuilt.behind > 0) fail(`events: ${rebuilt.behind} users' events in the ${source} stop before the database's last seq`)
  }
  if (publishDuplicates !== null && publishDuplicates > 0) {
    fail(`events: JetStream dropped ${publishDuplicates} publishes as duplicates of messages already in the stream (events_publish_duplicates_total; the instances log each id): a cursor behind the stream or an event id given again`)
  }
  if (publishDuplicates === null) fail('events: an instance did not answer GET /metrics with events_publish_duplicates_total')
  if (unmatchedJournal > 0) fail(`events: ${unmatchedJournal} journal entries without their event or events without their journal entry`)
  return {
    events: database,
    streamMessages: stream.messages,
    feedEvents: feed.length,
    published: publisher?.published ?? 0,
    drainS,
    pendingAfterDrain: pending,
    publishDuplicates,
    fromStream,
    fromFeed,
    streamNotInDatabase: streamDiff.notInDatabase.length,
    databaseNotInStream: streamDiff.missing,
    feedNotInDatabase: feedDiff.notInDatabase.length,
    databaseNotInFeed: feedDiff.missing,
    unmatchedJournal,
  }
}
