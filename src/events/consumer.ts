import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { connect, type NatsConnection } from 'nats'
import pg from 'pg'
import type { BalanceEvent } from './event.js'
import { DATABASE_USERS_SQL, compareWithDatabase, rebuildBalances, type DatabaseUser } from './rebuild.js'

/**
 * `npm run events -- <mode>`: a consumer anyone can run.
 *   --follow            tail the JetStream stream (EVENTS_NATS_URL, EVENTS_STREAM) from its first message, one JSON line per event
 *   --follow --feed     the same from the HTTP feed (BALANCE_API_URL, default http://127.0.0.1:3000; API_TOKEN if tokens are set)
 *   --rebuild [--feed]  read everything there is from the stream (or the feed), recompute every balance from the events
 *                       alone and compare with the database (DATABASE_URL): exit 0 when they agree, 1 on any mismatch
 *                       (on a pruned database, each user from its oldest event kept: rebuildReport)
 */
export interface StreamRead {
  events: BalanceEvent[]
  messages: number
  /** The stream no longer starts at its first message (max_age or limits removed the oldest): any user may start late. */
  truncated: boolean
}

/** Every message of the stream, from the first to the last one there when the read began. */
export async function readStream (servers: string[], stream: string, timeoutMs = 10_000): Promise<StreamRead> {
  const nc = await connect({ servers, timeout: timeoutMs })
  try {
    const jsm = await nc.jetstreamManager({ timeout: timeoutMs })
    const { last_seq: last, first_seq: first } = (await jsm.streams.info(stream)).state
    const events: BalanceEvent[] = []
    if (last === 0) return { events, messages: 0, truncated: false }
    for await (const event of tail(nc, stream, last)) events.push(event)
    return { events, messages: events.length, truncated: first > 1 }
  } finally {
    await nc.close()
  }
}

/** The stream's events in stream order through an ordered consumer; ends after stream sequence `until` (or never). */
async function * tail (nc: NatsConnection, stream: string, until?: number): AsyncGenerator<BalanceEvent> {
  const consumer = await nc.jetstream().consumers.get(stream)
  const messages = await consumer.consume()
  try {
    for await (const message of messages) {
      yield message.json<BalanceEvent>()
      if (until !== undefined && message.seq >= until) return
    }
  } finally {
    await messages.close()
  }
}

export interface FeedSource { baseUrl: string, token?: string }

/** A page, or (410 CURSOR_EXPIRED) the cursor from which the kept feed is complete. */
async function feedPage (source: FeedSource, after: string | undefined): Promise<{ items: BalanceEvent[], nextCursor: string } | { oldestCursor: string }> {
  const query = new URLSearchParams({ limit: '1000', ...(after === undefined ? {} : { after }) })
  const response = await fetch(`${source.baseUrl}/api/events?${query.toString()}`, {
    headers: source.token === undefined ? {} : { authorization: `Bearer ${source.token}` },
    signal: AbortSignal.timeout(30_000),
  })
  if (response.status === 410) {
    const body = await response.json() as { code?: string, oldestCursor?: unknown }
    if (body.code === 'CURSOR_EXPIRED' && typeof body.oldestCursor === 'string') return { oldestCursor: body.oldestCursor }
  }
  if (response.status !== 200) throw new Error(`GET /api/events answered ${response.status}: ${await response.text()}`)
  return await response.json() as { items: BalanceEvent[], nextCursor: string }
}

/**
 * The feed from its start until a page comes back empty (everything committed before the oldest open transaction).
 * On a pruned database the read begins at the oldest event kept (a read without a cursor starts there). Pruned past the read
 * position while reading, the events in between are gone: that is an error (run it again), never a silent gap.
 */
export async function readFeed (source: FeedSource): Promise<BalanceEvent[]> {
  const events: BalanceEvent[] = []
  let cursor: string | undefined
  for (;;) {
    const page = await feedPage(source, cursor)
    if ('oldestCursor' in page) {
      if (cursor !== undefined) throw new Error('the feed was pruned past the read position while reading (EVENTS_RETENTION_HOURS): run the rebuild again')
      cursor = page.oldestCursor
      continue
    }
    if (page.items.length === 0) return events
    events.push(...page.items)
    cursor = page.nextCursor
  }
}

/** Tails the feed; where events were pruned before they were read (410), says so on stderr and goes on after them. */
async function * followFeed (source: FeedSource, pollMs = 500): AsyncGenerator<BalanceEvent> {
  let cursor: string | undefined
  for (;;) {
    const page = await feedPage(source, cursor)
    if ('oldestCursor' in page) {
      console.error(`events were pruned before they were read${cursor === undefined ? ' (from the start)' : ` (after ${cursor})`}; following from the oldest kept, ${page.oldestCursor}`)
      cursor = page.oldestCursor
      continue
    }
    yield * page.items
    cursor = page.nextCursor
    if (page.items.length === 0) await new Promise((resolve) => setTimeout(resolve, pollMs))
  }
}

export async function readDatabaseUsers (databaseUrl: string): Promise<DatabaseUser[]> {
  const client = new pg.Client({ connectionString: databaseUrl, application_name: 'balance-api-events-rebuild' })
  await client.connect()
  try {
    const rows = (await client.query<{ id: string, balance: string, last_seq: string, pruned_seq: string }>(DATABASE_USERS_SQL)).rows
    return rows.map((row) => ({ id: Number(row.id), balance: Number(row.balance), lastSeq: Number(row.last_seq), prunedSeq: Number(row.pruned_seq) }))
  } finally {
    await client.end()
  }
}

export interface RebuildReport {
  source: 'stream' | 'feed'
  events: number
  duplicates: number
  users: number
  checked: number
  behind: number
  /** Users whose first events read came after pruned ones (checked from there on). */
  startedAfterPruning: number
  /** Users whose every event was pruned (not checked). */
  pruned: number
  problems: string[]
  mismatches: string[]
  ok: boolean
}

/**
 * The rebuild's verdict. On a pruned database (EVENTS_RETENTION_HOURS) the events alone no longer hold every user's
 * history: a user whose oldest events were pruned is rebuilt from its first event read (the balance before it,
 * balanceAfter − amount) when that event's seq is at most the database's last pruned seq + 1, and checked from there
 * (read after the events, the database's pruned seq can only be larger). From a stream that lost its oldest messages
 * (`truncated`), any first seq is accepted. A gap anywhere else is still a problem.
 */
export async function rebuildReport (source: 'stream' | 'feed', events: BalanceEvent[], databaseUrl: string, options: { truncated?: boolean } = {}): Promise<RebuildReport> {
  const database = await readDatabaseUsers(databaseUrl)
  const prunedSeq = new Map(database.map((row) => [row.id, row.prunedSeq ?? 0]))
  const rebuilt = rebuildBalances(events, options.truncated === true ? () => Number.POSITIVE_INFINITY : (userId) => prunedSeq.get(userId) ?? 0)
  const compared = compareWithDatabase(rebuilt, database)
  return {
    source,
    events: rebuilt.events,
    duplicates: rebuilt.duplicates,
    users: rebuilt.users.size,
    checked: compared.checked,
    behind: compared.behind,
    startedAfterPruning: rebuilt.startedAfterPruning,
    pruned: compared.pruned,
    problems: rebuilt.problems.slice(0, 20),
    mismatches: compared.mismatches.slice(0, 20),
    ok: rebuilt.problems.length === 0 && compared.mismatches.length === 0,
  }
}

interface Options { mode: 'follow' | 'rebuild', feed: boolean }

export function parseArgs (argv: string[]): Options {
  let mode: Options['mode'] | undefined
  let feed = false
  for (const arg of argv) {
    if (arg === '--follow' || arg === '--rebuild') {
      if (mode !== undefined) throw new Error('give one of --follow, --rebuild')
      mode = arg === '--follow' ? 'follow' : 'rebuild'
    } else if (arg === '--feed') feed = true
    else throw new Error(`unknown option ${arg} (use --follow or --rebuild, with --feed to read the HTTP feed instead of the stream)`)
  }
  if (mode === undefined) throw new Error('give --follow or --rebuild (with --feed to read the HTTP feed instead of the stream)')
  return { mode, feed }
}

function env (name: string, fallback?: string): string {
  const value = process.env[name] ?? fallback
  if (value === undefined || value === '') throw new Error(`${name} is not set`)
  return value
}

async function main (): Promise<number> {
  const options = parseArgs(process.argv.slice(2))
  const feed: FeedSource = { baseUrl: env('BALANCE_API_URL', 'http://127.0.0.1:3000'), ...(process.env.API_TOKEN === undefined ? {} : { token: process.env.API_TOKEN }) }
  const servers = (): string[] => env('EVENTS_NATS_URL').split(',')
  const stream = env('EVENTS_STREAM', 'BALANCE_EVENTS')
  if (options.mode === 'follow') {
    if (options.feed) {
      for await (const event of followFeed(feed)) console.log(JSON.stringify(event))
    } else {
      const nc = await connect({ servers: servers(), timeout: 10_000 })
      for await (const event of tail(nc, stream)) console.log(JSON.stringify(event))
    }
    return 0
  }
  const read = options.feed ? { events: await readFeed(feed), truncated: false } : await readStream(servers(), stream)
  const report = await rebuildReport(options.feed ? 'feed' : 'stream', read.events, env('DATABASE_URL'), { truncated: read.truncated })
  console.log(JSON.stringify(report, null, 2))
  return report.ok ? 0 : 1
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  main().then((code) => { process.exitCode = code }, (error: unknown) => {
    console.error(error instanceof Error ? error.message : error)
    process.exitCode = 2
  })
}
