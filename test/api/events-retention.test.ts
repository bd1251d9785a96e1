import t from 'tap'
import { build, listen, sql } from '../helper.js'
import { newUser, request } from '../support/ledger.js'
import { readFeed, rebuildReport } from '../../src/events/consumer.js'
import { encodeFeedCursor } from '../../src/events/cursor.js'
import type { BalanceEvent } from '../../src/events/event.js'
import { EventPruner } from '../../src/events/pruner.js'

// Retention: one prune round deletes exactly the feed prefix older than EVENTS_RETENTION_HOURS (never past a
// publisher's cursor), each user's seq goes on without a gap, the feeds answer 410 CURSOR_EXPIRED for what is gone
// and page normally from where the kept log starts, and the metrics say so. Events are aged by UPDATE created_at.

type Row = { user_id: string, seq: string }
type Page = { items: BalanceEvent[], nextCursor: string | number }

const AGE = `UPDATE events SET created_at = now() - interval '2 hours'`

t.test('a prune round: what goes, what stays, seq, feeds, metrics, the lease', async (t) => {
  const { app, db } = await build(t, { env: { EVENTS_RETENTION_HOURS: '1', EVENTS_PRUNE_BATCH: '1000', EVENTS_PRUNE_INTERVAL_MS: '3600000' } })
  const pruner = app.events.pruner!
  const rows = async (): Promise<Array<[number, number]>> =>
    (await sql<Row>(app, 'SELECT user_id, seq FROM events ORDER BY xid, id')).map((r) => [Number(r.user_id), Number(r.seq)])
  const get = async (url: string): Promise<{ status: number, body: Record<string, unknown> & Page }> => {
    const res = await request(app, 'GET', url)
    return { status: res.statusCode, body: res.json() }
  }
  const position = async (userId: number, seq: number): Promise<string> => {
    const [row] = await sql<{ xid: string, id: string }>(app, 'SELECT xid::text AS xid, id FROM events WHERE user_id = $1 AND seq = $2', [userId, seq])
    return encodeFeedCursor({ xid: row!.xid, id: Number(row!.id) })
  }

  const a = await newUser(app, 100)
  const b = await newUser(app, 50)
  const c = await newUser(app, 10)
  for (let i = 0; i < 3; i += 1) t.equal((await request(app, 'PATCH', '/api/balance', { userId: a, amount: -1 })).statusCode, 200)
  t.equal((await request(app, 'POST', '/api/transfers', { fromUserId: a, toUserId: b, amount: 5 })).statusCode, 201)
  t.equal((await request(app, 'PATCH', '/api/balance', { userId: c, amount: 1 })).statusCode, 200)
  const early = (await get('/api/events?limit=1')).body.nextCursor as string // after the seeded user's opening
  const lastOld = await position(c, 2)
  await sql(app, AGE)
  t.equal((await request(app, 'PATCH', '/api/balance', { userId: a, amount: -1 })).statusCode, 200, 'one young event: a seq 6')
  t.same(await rows(), [[1, 1], [a, 1], [b, 1], [c, 1], [a, 2], [a, 3], [a, 4], [a, 5], [b, 2], [c, 2], [a, 6]])

  const other = new EventPruner({
    retentionHours: 1, batchSize: 1000, intervalMs: 3_600_000, leaseTtlMs: 10_000, statementTimeoutMs: 5_000, connectTimeoutMs: 5_000,
    publisher: false, database: { connectionString: db.url }, instance: 'another-instance',
  }, { pruned () {}, failed () {}, stats () {} }, { warn () {} })
  t.teardown(async () => { await other.stop() })

  t.same(await pruner.pruneOnce(), { held: true, deleted: 10 }, 'every aged event goes, the young one stays')
  t.same(await other.pruneOnce(), { held: false, deleted: 0 }, 'another instance: the lease is held, it deletes nothing')
  t.same(await rows(), [[a, 6]], 'only the young event is left (b, c and the seeded user have none)')
  t.same((await sql<Row>(app, 'SELECT user_id, seq FROM events_pruned ORDER BY user_id')).map((r) => [Number(r.user_id), Number(r.seq)]),
    [[1, 1], [a, 5], [b, 2], [c, 2]], 'each user\'s last deleted seq is kept')

  // Seq goes on with no gap, also for users with no event left; a hold step reads the balance kept with the seq.
  t.equal((await request(app, 'PATCH', '/api/balance', { userId: b, amount: 1 })).statusCode, 200)
  t.equal((await request(app, 'POST', '/api/holds', { userId: c, amount: 3 })).statusCode, 201)
  t.equal((await request(app, 'PATCH', '/api/balance', { userId: a, amount: -1 })).statusCode, 200)
  // The global feed: a cursor before the last pruned event (the explicit start too) is gone; at it (or later) pages
  // normally, and a read without a cursor starts there.
  for (const url of [`/api/events?after=${early}`, `/api/events?after=${encodeFeedCursor({ xid: '0', id: 0 })}`]) {
    const expired = await get(url)
    t.equal(expired.status, 410, `${url}: 410`)
    t.match(expired.body, { statusCode: 410, code: 'CURSOR_EXPIRED', error: 'Gone', message: /pruned/, oldestCursor: lastOld })
  }
  const fromOldest = await get(`/api/events?after=${lastOld}`)
  t.equal(fromOldest.status, 200, 'from oldestCursor: a page')
  const kept = fromOldest.body.items
  t.same(kept.map((e) => [e.userId, e.seq, e.type, e.balanceAfter]), [[a, 6, 'change', 91], [b, 3, 'change', 56], [c, 3, 'hold-created', 11], [a, 7, 'change', 90]],
    'every event kept; each user\'s seq continues from its last pruned one, a hold step with the balance kept with it')
  t.equal((await get(`/api/events?after=${fromOldest.body.nextCursor}`)).body.items.length, 0, 'and on to the end')
  const noCursor = await get('/api/events')
  t.equal(noCursor.status, 200, 'without a cursor: a page, from the oldest event kept')
  t.same(noCursor.body, fromOldest.body, 'the same page as from oldestCursor')

  // A user's feed: exact per seq.
  const user = async (id: number, after: number): Promise<{ status: number, body: Record<string, unknown> & Page }> => await get(`/api/users/${id}/events?after=${after}`)
  t.match((await user(a, 0)).body, { statusCode: 410, code: 'CURSOR_EXPIRED', userId: a, oldestSeq: 6 }, 'after=0: seq 1..5 are gone')
  t.equal((await user(a, 4)).status, 410, 'after=4: seq 5 is gone')
  t.same((await user(a, 5)).body.items.map((e) => e.seq), [6, 7], 'after=5: nothing missed')
  const fromFirstKept = await get(`/api/users/${a}/events`)
  t.same([fromFirstKept.status, fromFirstKept.body.items.map((e) => e.seq), fromFirstKept.body.nextCursor], [200, [6, 7], 7], 'without after: from the first seq kept')
  t.same((await user(b, 1)).body, { statusCode: 410, code: 'CURSOR_EXPIRED', error: 'Gone', message: String((await user(b, 1)).body.message), userId: b, oldestSeq: 3 })
  t.same((await user(b, 2)).body.items.map((e) => e.seq), [3])
  t.same((await user(1, 1)).body, { items: [], nextCursor: 1 }, 'the seeded user: nothing kept, nothing missed after seq 1')

  // npm run events -- --rebuild --feed on the pruned database: the read starts at oldestCursor, users from their
  // oldest event kept.
  const read = await readFeed({ baseUrl: await listen(app) })
  t.same(read, kept, 'the consumer reads from the oldest event kept')
  const report = await rebuildReport('feed', read, db.url)
  t.match(report, { ok: true, events: 4, checked: 3, startedAfterPruning: 3, pruned: 1, problems: [], mismatches: [] })

  // Metrics: pruned total, the table's size (exact once analyzed), the oldest event's age.
  await sql(app, 'ANALYZE events')
  await pruner.pruneOnce()
  const metrics = (await app.inject('/metrics')).body
  t.match(metrics, /^events_pruned_total 10$/m)
  t.match(metrics, /^events_table_rows 4$/m)
  const oldest = Number(/^events_oldest_age_seconds (\S+)$/m.exec(metrics)?.[1])
  t.ok(oldest >= 0 && oldest < 60, `the oldest event kept is young (${oldest} s)`)

  // A publisher's cursor behind: nothing after it goes, however old.
  await sql(app, AGE)
  const cursorAt = await sql<{ xid: string, id: string }>(app, 'SELECT xid, id FROM events WHERE user_id = $1 AND seq = 3', [b])
  await sql(app, `UPDATE events_publisher SET holder = 'a-publisher-elsewhere', expires_at = now() + interval '10 s', updated_at = now(), cursor_xid = $1, cursor_id = $2`, [cursorAt[0]!.xid, cursorAt[0]!.id])
  t.same(await pruner.pruneOnce(), { held: true, deleted: 2 }, 'up to the publisher\'s cursor only')
  t.same(await rows(), [[c, 3], [a, 7]], 'the unpublished ones stay')
  t.match((await app.inject('/metrics')).body, /^events_pruned_total 12$/m)

  const doc = app.swagger() as { paths: Record<string, { get: { responses: Record<string, unknown> } }> }
  t.ok(doc.paths['/api/events']?.get.responses['410'] !== undefined && doc.paths['/api/users/{id}/events']?.get.responses['410'] !== undefined, 'the 410 is in the OpenAPI document')
})

t.test('the timer prunes by itself, one interval after boot', async (t) => {
  const { app } = await build(t, { env: { EVENTS_RETENTION_HOURS: '1', EVENTS_PRUNE_INTERVAL_MS: '1000' } })
  await sql(app, AGE) // the seeded user's opening
  const started = Date.now()
  let pruned = 0
  while (pruned === 0 && Date.now() - started < 10_000) {
    await new Promise((resolve) => setTimeout(resolve, 100))
    pruned = Number((await sql<{ pruned: string }>(app, 'SELECT pruned FROM events_retention'))[0]?.pruned)
  }
  t.equal(pruned, 1, `pruned by the timer after ${Date.now() - started} ms`)
  t.match((await app.inject('/metrics')).body, /^events_pruned_total 1$/m)
  const backends = async (): Promise<number> => Number((await sql<{ n: string }>(app,
    `SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'balance-api-events-pruner'`))[0]?.n)
  for (let i = 0; i < 50 && await backends() > 0; i += 1) await new Promise((resolve) => setTimeout(resolve, 20))
  t.equal(await backends(), 0, 'no backend held between rounds')
})

t.test('EVENTS=off: no pruner runs; the feed still orders by xid as a number', async (t) => {
  const { app } = await build(t, { env: { EVENTS: 'off' } })
  t.equal(app.events.pruner, undefined)
  // The checked page orders by xid as a number, not as the text it carries: xid 9 before xid 10.
  await sql(app, `INSERT INTO events (id, xid, user_id, seq, type, amount, balance_after, created_at) VALUES (900000001, '10', 424242, 2, 'change', 1, 2, now()), (900000002, '9', 424242, 1, 'change', 1, 1, now())`)
  const page = (await request(app, 'GET', '/api/events?limit=2')).json() as { items: BalanceEvent[] }
  t.same(page.items.map((e) => e.eventId), [900000002, 900000001])
})
