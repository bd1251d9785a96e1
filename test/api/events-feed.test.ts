import pg from 'pg'
import t from 'tap'
import { build, sql, strategies } from '../helper.js'
import { newUser, request } from '../support/ledger.js'
import { eventCount, feedPage, journalWithoutEvent, mismatches, readWholeFeed, rebuild } from '../support/events.js'
import { encodeFeedCursor } from '../../src/events/cursor.js'
import type { BalanceEvent } from '../../src/events/event.js'

// The HTTP feed: what an event says, pages and cursors, bad input, and the cursor under concurrent commits
// (a transaction held open with its journal entry: the feed waits for it, then serves every event once).

const strip = ({ createdAt: _c, eventId: _e, entryId: _n, ...rest }: BalanceEvent): Omit<BalanceEvent, 'createdAt' | 'eventId' | 'entryId'> => rest

t.test('events: shape, both feeds, cursors, limits, refusals write nothing', async (t) => {
  const { app } = await build(t)
  await sql(app, 'DELETE FROM events') // the seeded user's opening event: start from an empty feed
  const empty = await feedPage(app)
  t.same(empty, { items: [], nextCursor: encodeFeedCursor({ xid: '0', id: 0 }) }, 'no event yet: an empty page and the start cursor')
  t.same((await feedPage(app, empty.nextCursor)).nextCursor, empty.nextCursor, 'an empty page returns the same cursor')

  const a = await newUser(app, 100)
  const b = await newUser(app, 0)
  await newUser(app, 0) // no opening entry, no event
  await request(app, 'PATCH', '/api/balance', { userId: a, amount: -10 }, 'feed-key-1')
  const transfer = (await request(app, 'POST', '/api/transfers', { fromUserId: a, toUserId: b, amount: 30 })).json() as { transferId: string }
  t.equal((await request(app, 'PATCH', '/api/balance', { userId: b, amount: -1000 })).statusCode, 409, 'a refusal')
  t.equal((await request(app, 'POST', '/api/transfers', { fromUserId: b, toUserId: a, amount: 1000 })).statusCode, 409, 'a refused transfer')
  await request(app, 'PATCH', '/api/balance', { userId: b, amount: 7 })

  const { events } = await readWholeFeed(app)
  t.equal(events.length, 5, 'five committed entries, five events; none for the refusals')
  t.same(events.map(strip), [
    { seq: 1, type: 'opening', userId: a, amount: 100, balanceAfter: 100, version: 1 },
    { seq: 2, type: 'change', userId: a, amount: -10, balanceAfter: 90, idempotencyKey: 'feed-key-1', version: 1 },
    { seq: 3, type: 'transfer-out', userId: a, amount: -30, balanceAfter: 60, transferId: transfer.transferId, version: 1 },
    { seq: 1, type: 'transfer-in', userId: b, amount: 30, balanceAfter: 30, transferId: transfer.transferId, version: 1 },
    { seq: 2, type: 'change', userId: b, amount: 7, balanceAfter: 37, version: 1 },
  ], 'commit order, per-user seq, the transfer legs share their transferId, the key is on its event')
  for (const event of events) {
    t.equal(event.eventId, event.entryId, 'a change\'s event id is its journal entry id')
    t.match(event.createdAt, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/)
  }
  t.equal(await journalWithoutEvent(app), 1, 'every journal entry has its event but the seeded one (the test removed it), and no event lacks its entry')

  // Pages of 2 walk the same list.
  const walked: BalanceEvent[] = []
  let cursor: string | undefined
  for (let i = 0; i < 10; i += 1) {
    const page = await feedPage(app, cursor, 2)
    t.ok(page.items.length <= 2, 'limit honoured')
    walked.push(...page.items)
    if (page.items.length === 0) { t.equal(page.nextCursor, cursor, 'the end: the same cursor'); break }
    cursor = page.nextCursor
  }
  t.same(walked, events, 'pages of 2 give the same events in the same order')

  const userPage = (await request(app, 'GET', `/api/users/${a}/events?after=1&limit=1`)).json() as { items: BalanceEvent[], nextCursor: number }
  t.same(userPage.items.map((event) => event.seq), [2], 'the per-user feed: seq > after')
  t.equal(userPage.nextCursor, 2)
  const userAll = (await request(app, 'GET', `/api/users/${a}/events`)).json() as { items: BalanceEvent[], nextCursor: number }
  t.same(userAll.items, events.filter((event) => event.userId === a), 'the per-user feed holds the same events')
  t.same((await request(app, 'GET', `/api/users/${a}/events?after=3`)).json(), { items: [], nextCursor: 3 }, 'nothing new: the same cursor')

  const bad = async (url: string, status: number, code: string): Promise<void> => {
    const res = await request(app, 'GET', url)
    t.equal(res.statusCode, status, `${url} → ${status}`)
    t.equal((res.json() as { code: string }).code, code, `${url} → ${code}`)
  }
  await bad('/api/events?after=abc', 400, 'INVALID_CURSOR')
  await bad(`/api/events?after=${Buffer.from('1.x').toString('base64url')}`, 400, 'INVALID_CURSOR')
  await bad(`/api/events?after=${Buffer.from('01.2').toString('base64url')}`, 400, 'INVALID_CURSOR')
  await bad(`/api/events?after=${Buffer.from('99999999999999999999.1').toString('base64url')}`, 400, 'INVALID_CURSOR')
  await bad(`/api/events?after=${'A'.repeat(51)}`, 400, 'FST_ERR_VALIDATION')
  await bad('/api/events?limit=0', 400, 'FST_ERR_VALIDATION')
  await bad('/api/events?limit=1001', 400, 'FST_ERR_VALIDATION')
  await bad('/api/events?limit=1e2', 400, 'FST_ERR_VALIDATION')
  await bad('/api/events?since=1', 400, 'FST_ERR_VALIDATION')
  await bad(`/api/users/${a}/events?after=-1`, 400, 'FST_ERR_VALIDATION')
  await bad(`/api/users/${a}/events?after=x`, 400, 'FST_ERR_VALIDATION')
  await bad('/api/users/999999/events', 404, 'USER_NOT_FOUND')
})

t.test('the feed waits for a transaction that holds an event, then serves every event exactly once', async (t) => {
  const { app, db } = await build(t, { env: { GROUP_COMMIT: 'off' } })
  const slow = await newUser(app, 0)
  const users = await Promise.all(Array.from({ length: 4 }, async () => await newUser(app, 1000)))
  const { events: before, cursor } = await readWholeFeed(app)

  // A writer that takes its xid now and commits last: what the classic `id > last seen` poll would skip.
  const held = new pg.Client({ connectionString: db.url })
  await held.connect()
  t.teardown(async () => { await held.end() })
  await held.query('BEGIN')
  await held.query('UPDATE users SET balance = balance + 5 WHERE id = $1', [slow])
  await held.query(`INSERT INTO journal_entries (user_id, amount, balance_after, kind) VALUES ($1, 5, 5, 'change')`, [slow])

  for (const user of users) t.equal((await request(app, 'PATCH', '/api/balance', { userId: user, amount: -1 })).statusCode, 200)
  const committed = await eventCount(app)
  t.equal(committed, before.length + users.length, 'the later changes committed their events')
  const page = await feedPage(app, cursor)
  t.same(page.items, [], 'while the older transaction is open, the feed serves none of the later events')
  t.equal(page.nextCursor, cursor, 'and keeps the cursor')

  await held.query('COMMIT')
  const { events: after } = await readWholeFeed(app, { cursor, read: before.length })
  t.equal(after.length, users.length + 1, 'after its commit: all of them')
  t.equal(after[0]?.userId, slow, 'the held transaction\'s event first (its xid is the oldest)')
  const { problems } = rebuild([...before, ...after])
  t.same(problems, [], 'each event once, per-user seq in order')
})

t.test('a reader polling all the time sees every event exactly once while many users commit concurrently', async (t) => {
  const { app } = await build(t, { env: { DB_POOL_MAX: '8' } })
  const users = await Promise.all(Array.from({ length: 12 }, async () => await newUser(app, 500)))
  let writing = true
  const seen: BalanceEvent[] = []
  const reader = (async () => {
    let cursor: string | undefined
    while (writing || seen.length < await eventCount(app)) {
      const page = await feedPage(app, cursor, 50)
      seen.push(...page.items)
      cursor = page.nextCursor
      if (page.items.length === 0) await new Promise((resolve) => setTimeout(resolve, 5))
    }
  })()
  let statuses = 0
  await Promise.all(Array.from({ length: 600 }, async (_, i) => {
    const from = users[i % users.length]!
    const to = users[(i * 7 + 3) % users.length]!
    const res = i % 5 === 0 && from !== to
      ? await request(app, 'POST', '/api/transfers', { fromUserId: from, toUserId: to, amount: 1 + (i % 13) })
      : await request(app, 'PATCH', '/api/balance', { userId: from, amount: i % 3 === 0 ? -(1 + (i % 40)) : 1 + (i % 9) }, i % 4 === 0 ? `poll-${i}` : undefined)
    if (res.statusCode === 200) statuses += 1
  }))
  writing = false
  await reader
  t.ok(statuses > 300, `most writes applied (${statuses})`)
  const { problems, balances, events } = rebuild(seen)
  t.same(problems, [], 'no event twice, none skipped, per user seq 1..n in order')
  t.equal(events, await eventCount(app), 'the reader saw every committed event')
  t.same(await mismatches(app, balances), [], 'balances rebuilt from the feed equal the database')
})

for (const strategy of strategies) {
  t.test(`${strategy}, group commit off: a keyed change, a keyed transfer and a keyed user carry their key on their events`, async (t) => {
    const { app } = await build(t, { strategy, env: { GROUP_COMMIT: 'off' } })
    const a = (await request(app, 'POST', '/api/users', { balance: 50 }, `${strategy}-user`)).json() as { id: number }
    const b = await newUser(app, 0)
    t.equal((await request(app, 'PATCH', '/api/balance', { userId: a.id, amount: -5 }, `${strategy}-change`)).statusCode, 200)
    t.equal((await request(app, 'PATCH', '/api/balance', { userId: a.id, amount: -5 }, `${strategy}-change`)).statusCode, 200, 'a replay')
    t.equal((await request(app, 'POST', '/api/transfers', { fromUserId: a.id, toUserId: b, amount: 5 }, `${strategy}-move`)).statusCode, 201)
    const { events } = await readWholeFeed(app)
    t.same(events.filter((event) => event.userId === a.id || event.userId === b).map((event) => [event.type, event.idempotencyKey]), [
      ['opening', `${strategy}-user`], ['change', `${strategy}-change`], ['transfer-out', `${strategy}-move`], ['transfer-in', `${strategy}-move`],
    ], 'one event per executed write, none for the replay, each with its key')
  })
}

t.test('one INSERT with entries of several users (no writer does it today): each user\'s seq goes on from its own last', async (t) => {
  const { app } = await build(t)
  const a = await newUser(app, 10)
  const b = await newUser(app, 0)
  await sql(app, `UPDATE users SET balance = balance + 3 WHERE id IN ($1, $2)`, [a, b])
  await sql(app, `INSERT INTO journal_entries (user_id, amount, balance_after, kind) VALUES ($1, 1, 11, 'change'), ($2, 1, 1, 'change'), ($1, 2, 13, 'change'), ($2, 2, 3, 'change')`, [a, b])
  const { events } = await readWholeFeed(app)
  const mine = events.filter((event) => event.userId === a || event.userId === b)
  t.same(mine.map((event) => [event.userId, event.seq, event.balanceAfter]), [[a, 1, 10], [a, 2, 11], [b, 1, 1], [a, 3, 13], [b, 2, 3]],
    'per user seq in id order, and the feed keeps each user\'s events in seq order')
  t.same(rebuild(events).problems, [])
})

t.test('holds: created, captured (to a payee), voided and expired are events of the holder; the capture moves money in its own events', async (t) => {
  const { app } = await build(t)
  const payer = await newUser(app, 100)
  const payee = await newUser(app, 0)
  const hold = async (body: object): Promise<number> => {
    const res = await request(app, 'POST', '/api/holds', body)
    t.equal(res.statusCode, 201, `hold ${JSON.stringify(body)}`)
    return (res.json() as { holdId: number }).holdId
  }
  const captured = await hold({ userId: payer, amount: 30, metadata: { orderId: 'A-1' } })
  t.equal((await request(app, 'POST', `/api/holds/${captured}/capture`, { amount: 20, toUserId: payee })).statusCode, 200)
  const voided = await hold({ userId: payer, amount: 5 })
  t.equal((await request(app, 'POST', `/api/holds/${voided}/void`, {})).statusCode, 200)
  const expiring = await hold({ userId: payer, amount: 7, expiresInSeconds: 1 })
  await new Promise((resolve) => setTimeout(resolve, 1100))
  t.equal((await request(app, 'PATCH', '/api/balance', { userId: payer, amount: 1 })).statusCode, 200, 'a write settles the expired hold')

  const { events } = await readWholeFeed(app)
  const mine = events.filter((event) => event.userId === payer || event.userId === payee)
  t.same(mine.map((event) => [event.userId, event.seq, event.type, event.amount, event.balanceAfter, event.holdId ?? null]), [
    [payer, 1, 'opening', 100, 100, null],
    [payer, 2, 'hold-created', 0, 100, captured],
    [payer, 3, 'hold-captured', 0, 100, captured],
    [payer, 4, 'capture', -20, 80, captured],
    [payee, 1, 'capture-in', 20, 20, captured],
    [payer, 5, 'hold-created', 0, 80, voided],
    [payer, 6, 'hold-voided', 0, 80, voided],
    [payer, 7, 'hold-created', 0, 80, expiring],
    [payer, 8, 'hold-expired', 0, 80, expiring],
    [payer, 9, 'change', 1, 81, null],
  ], 'every hold step, in seq order, amount 0 for the lifecycle, the balance moves with the capture entries')
  const created = mine.find((event) => event.type === 'hold-created')
  t.match(created, { hold: { amount: 30, captured: 0, status: 'active', toUserId: null }, metadata: { orderId: 'A-1' } }, 'the hold as it was')
  t.match(mine.find((event) => event.type === 'hold-captured'), { hold: { amount: 30, captured: 20, status: 'captured', toUserId: payee } })
  t.same(rebuild(events).problems, [], 'seq and balanceAfter chain with the hold events in')
  t.same(await mismatches(app, rebuild(events).balances), [], 'balances rebuilt from events equal the database')
})

t.test('EVENTS=off: the triggers are disabled for the database, on switches them back', async (t) => {
  const off = await build(t, { env: { EVENTS: 'off' } })
  const seeded = await eventCount(off.app) // the seeder ran before the switch
  const user = await newUser(off.app, 10)
  await request(off.app, 'PATCH', '/api/balance', { userId: user, amount: 1 })
  t.equal(await eventCount(off.app), seeded, 'no event written')
  const enabled = await sql<{ tgname: string, tgenabled: string }>(off.app, `SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid IN ('journal_entries'::regclass, 'holds'::regclass) AND NOT tgisinternal ORDER BY tgname`)
  t.same(enabled.map((row) => row.tgenabled), ['D', 'D', 'D', 'D'], 'the four event triggers disabled')
  t.equal((await request(off.app, 'POST', '/api/holds', { userId: user, amount: 1 })).statusCode, 201, 'a hold while off')
  const on = await build(t, { database: off.db })
  await request(on.app, 'PATCH', '/api/balance', { userId: user, amount: 1 })
  const mine = (await readWholeFeed(on.app)).events.filter((event) => event.userId === user)
  t.same(mine.map((event) => [event.seq, event.balanceAfter]), [[1, 12]], 'events again, seq from 1 (what happened while off has none)')
})
