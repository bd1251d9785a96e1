import type { FastifyInstance } from 'fastify'
import t from 'tap'
import { build, sql, strategies } from '../helper.js'
import { newUser, request } from '../support/ledger.js'
import { eventCount, journalWithoutEvent, mismatches, readWholeFeed, rebuild } from '../support/events.js'
import { NATS_SERVER, startNats } from '../support/nats.js'
import { haveSystemTools } from '../support/system-tool.js'
import { prng } from '../support/model-check.js'
import { behindPgBouncer } from '../support/behind-pgbouncer.js'
import { PGBOUNCER } from '../../src/tooling/pgbouncer.js'
import pg from 'pg'
import { readStream, rebuildReport } from '../../src/events/consumer.js'

// A mixed storm on many users (changes, transfers, keyed retries, refusals, holds created, captured, voided, expired) with every strategy, group commit on and
// off; then balances rebuilt from the JetStream stream alone and from the HTTP feed alone equal the database, per user
// seq is 1..n with no gap and no duplicate, and no refusal has an event.

const USERS = 16
const REQUESTS = 900

/** Waits until the publisher's cursor has passed every event (the outbox is empty). */
export async function publishedAll (app: FastifyInstance, deadlineMs = 60_000): Promise<void> {
  const deadline = Date.now() + deadlineMs
  for (;;) {
    const [row] = await sql<{ pending: string }>(app, `
      SELECT count(*) AS pending FROM events e, events_publisher p WHERE (e.xid, e.id) > (p.cursor_xid, p.cursor_id)`)
    if (Number(row?.pending) === 0) return
    if (Date.now() > deadline) throw new Error(`${row?.pending} events still unpublished after ${deadlineMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

interface StormCounts { applied: number, refused: number, replayed: number, other: Record<string, number> }

async function storm (apps: FastifyInstance[], users: number[], seed: number): Promise<StormCounts> {
  const app = apps[0]!
  const random = prng(seed)
  const counts: StormCounts = { applied: 0, refused: 0, replayed: 0, other: {} }
  const plan = Array.from({ length: REQUESTS }, (_, i) => {
    const r = random()
    const from = users[Math.floor(random() * users.length)]!
    let to = users[Math.floor(random() * users.length)]!
    if (to === from) to = users[(users.indexOf(from) + 1) % users.length]!
    const key = random() < 0.3 ? `storm-${seed}-${i}` : undefined
    const copies = key !== undefined && random() < 0.3 ? 3 : 1
    const amount = r < 0.4 ? 1 + Math.floor(random() * 50) : r < 0.8 ? -(1 + Math.floor(random() * 80)) : r < 0.85 ? -1_000_000 : 0
    return { kind: amount === 0 ? 'transfer' : 'change', from, to, amount: amount === 0 ? 1 + Math.floor(random() * 120) : amount, key, copies }
  })
  // Holds alongside: each created, then captured (half of them to a payee), voided, or left to expire (a later
  // write on its user settles it).
  const holdLane = Array.from({ length: 60 }, async (_, k) => {
    const userId = users[(k % 4 === 0 ? k + 1 : k) % users.length]! // a capture's holder has money (every 4th user starts at 0)
    const res = await request(app, 'POST', '/api/holds', { userId, amount: 1 + (k % 20), expiresInSeconds: k % 4 === 3 ? 1 : 600 })
    if (res.statusCode !== 201) { counts.refused += res.statusCode === 409 ? 1 : 0; return }
    const holdId = (res.json() as { holdId: number }).holdId
    const step = k % 4 === 0
      ? await request(app, 'POST', `/api/holds/${holdId}/capture`, k % 8 === 0 ? { toUserId: users[(k + 2) % users.length]! } : { amount: 1 })
      : k % 4 === 1 ? await request(app, 'POST', `/api/holds/${holdId}/void`, {}) : undefined
    if (step !== undefined && step.statusCode !== 200) counts.other[`hold ${step.statusCode}`] = (counts.other[`hold ${step.statusCode}`] ?? 0) + 1
  })
  await Promise.all([...holdLane, ...plan.flatMap((step, index) => Array.from({ length: step.copies }, async (_, copy) => {
    const app = apps[(index + copy) % apps.length]!
    const res = step.kind === 'transfer'
      ? await request(app, 'POST', '/api/transfers', { fromUserId: step.from, toUserId: step.to, amount: step.amount }, step.key)
      : await request(app, 'PATCH', '/api/balance', { userId: step.from, amount: step.amount }, step.key)
    if (res.headers['idempotent-replayed'] === 'true') counts.replayed += 1
    else if (res.statusCode === 200 || res.statusCode === 201) counts.applied += 1
    else if (res.statusCode === 409) counts.refused += 1
    else counts.other[res.statusCode] = (counts.other[res.statusCode] ?? 0) + 1
  }))])
  // The holds left to expire: a write on every user once they are past their second settles them.
  await new Promise((resolve) => setTimeout(resolve, 1100))
  for (const userId of users) await request(app, 'PATCH', '/api/balance', { userId, amount: 1 })
  return counts
}

t.test('events rebuild', async (t) => {
  if (!haveSystemTools(t, [NATS_SERVER])) return
  const nats = await startNats(t)
  let seed = 1
  for (const groupCommit of ['on', 'off'] as const) {
    for (const strategy of strategies) {
      t.test(`${strategy}, group commit ${groupCommit}: stream and feed rebuild the database exactly`, async (t) => {
        const stream = `REBUILD_${strategy.replace('-', '_')}_${groupCommit}`.toUpperCase()
        const { app, db } = await build(t, {
          strategy,
          env: { GROUP_COMMIT: groupCommit, DB_POOL_MAX: '8', EVENTS_NATS_URL: nats.url, EVENTS_STREAM: stream, EVENTS_SUBJECT_PREFIX: `rebuild.${stream.toLowerCase()}`, EVENTS_POLL_INTERVAL_MS: '20' },
        })
        const users = await Promise.all(Array.from({ length: USERS }, async (_, i) => await newUser(app, i % 4 === 0 ? 0 : 500)))
        const counts = await storm([app], users, seed++)
        t.same(counts.other, {}, `only 200/201/409 (${JSON.stringify(counts)})`)
        t.ok(counts.refused > 20 && counts.replayed > 20, `refusals (${counts.refused}) and replays (${counts.replayed}) happened`)
        t.equal(await journalWithoutEvent(app), 0, 'one event per journal entry: none for a refusal, none for a replay')
        const holdEvents = await sql<{ type: string, n: string }>(app, `SELECT type, count(*) AS n FROM events WHERE type LIKE 'hold-%' GROUP BY type ORDER BY type`)
        const holdRows = await sql<{ status: string, n: string }>(app, `SELECT status, count(*) AS n FROM holds GROUP BY status ORDER BY status`)
        const byStatus = Object.fromEntries(holdRows.map((row) => [row.status, Number(row.n)]))
        const expected: Record<string, number> = { 'hold-created': Object.values(byStatus).reduce((a, b) => a + b, 0) }
        for (const status of ['captured', 'expired', 'voided']) if (byStatus[status] !== undefined) expected[`hold-${status}`] = byStatus[status]
        t.same(Object.fromEntries(holdEvents.map((row) => [row.type, Number(row.n)])), expected, `one event per hold step (${JSON.stringify(byStatus)})`)
        // An expired hold's event is written when a write settles it (its status in the table); until then it has none.
        t.ok((byStatus.captured ?? 0) > 0 && (byStatus.voided ?? 0) > 0, 'holds captured and voided')

        await publishedAll(app)
        const total = await eventCount(app)
        const fromStream = await readStream([nats.url], stream)
        t.equal(fromStream.messages, total, `the stream holds ${total} messages: each event once`)
        const streamRebuild = rebuild(fromStream.events)
        t.same(streamRebuild.problems, [], 'stream: each event once, per user seq 1..n in order, balanceAfter chains')
        t.same(await mismatches(app, streamRebuild.balances), [], 'stream alone rebuilds every balance')

        const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body
        t.match(metrics, new RegExp(`^events_published_total ${total}$`, 'm'), 'events_published_total counts every event this instance published')
        t.match(metrics, /^events_publish_lag_seconds [0-9.e+-]+$/m, 'the lag gauge is there')
        t.match(metrics, /^events_outbox_pending \d+$/m, 'the outbox gauge is there')

        const { events: fromFeed } = await readWholeFeed(app)
        const feedRebuild = rebuild(fromFeed)
        t.same(feedRebuild.problems, [], 'feed: each event once, per user seq 1..n in order')
        t.same(await mismatches(app, feedRebuild.balances), [], 'feed alone rebuilds every balance')

        const report = await rebuildReport('stream', fromStream.events, db.url)
        t.ok(report.ok, `npm run events -- --rebuild's check agrees (${report.checked} users checked, ${report.events} events)`)
        t.comment(`${strategy}/gc ${groupCommit}: ${counts.applied} applied, ${counts.refused} refused, ${counts.replayed} replayed; ${total} events, stream ${fromStream.messages}`)
      })
    }
  }
})

t.test('two instances behind PgBouncer (transaction mode), both running a publisher: one holds the lease, the stream is exact', async (t) => {
  if (!haveSystemTools(t, [NATS_SERVER, PGBOUNCER])) return
  const nats = await startNats(t)
  const { db, apps } = await behindPgBouncer(t, 'events_pgb', {
    instances: 2,
    env: { EVENTS_NATS_URL: nats.url, EVENTS_STREAM: 'PGB', EVENTS_SUBJECT_PREFIX: 'pgb.events', EVENTS_POLL_INTERVAL_MS: '20', DB_POOL_MAX: '6' },
  })
  const admin = new pg.Client({ connectionString: db.url })
  await admin.connect()
  t.teardown(async () => { await admin.end() })
  const users = await Promise.all(Array.from({ length: USERS }, async (_, i) => await newUser(apps[i % 2]!, i % 4 === 0 ? 0 : 500)))
  const counts = await storm(apps, users, 99)
  t.same(counts.other, {}, `only 200/201/409 (${JSON.stringify(counts)})`)
  const deadline = Date.now() + 60_000
  for (;;) {
    const { rows } = await admin.query<{ pending: string }>('SELECT count(*) AS pending FROM events e, events_publisher p WHERE (e.xid, e.id) > (p.cursor_xid, p.cursor_id)')
    if (Number(rows[0]?.pending) === 0) break
    if (Date.now() > deadline) throw new Error(`${rows[0]?.pending} events unpublished`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  const total = Number((await admin.query<{ n: string }>('SELECT count(*) AS n FROM events')).rows[0]?.n)
  const fromStream = await readStream([nats.url], 'PGB')
  t.equal(fromStream.messages, total, `the stream holds ${total} messages: each event once`)
  const report = await rebuildReport('stream', fromStream.events, db.url)
  t.same(report.problems, [], 'per user seq 1..n, in order, once')
  t.same(report.mismatches, [], 'the stream alone rebuilds every balance')
  const published = await Promise.all(apps.map(async (app) => {
    const text = (await app.inject({ method: 'GET', url: '/metrics' })).body
    return Number(/^events_published_total (\d+)$/m.exec(text)?.[1] ?? 0)
  }))
  t.equal(published[0]! + published[1]!, total, `the two instances published ${published.join(' + ')} = ${total}: none twice`)
})
