import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { build, sql, strategies } from '../helper.js'
import { assertBooksBalance, journal, newUser, request, snapshot } from '../support/ledger.js'

/**
 * Holds through the API: every route, code and money rule, for every strategy with group commit on and off
 * (a lone request goes through the strategy's own path either way; the batch paths are driven by the bursts in
 * test/system/holds-burst.test.ts and the model check in test/system/holds-model.test.ts).
 */

interface HoldBody {
  holdId: number
  userId: number
  amount: number
  status: string
  captured: number
  released: number
  expiresAt: string
  settledAt: string | null
  balance: number
  held: number
  available: number
  entryId: number | null
  payee: { userId: number, balance: number, entryId: number } | null
  metadata: Record<string, string> | null
}

async function hold (app: FastifyInstance, body: Record<string, unknown>, key?: string): Promise<{ status: number, body: HoldBody & Record<string, unknown> }> {
  const res = await request(app, 'POST', '/api/holds', body, key)
  return { status: res.statusCode, body: res.json() }
}

async function settle (app: FastifyInstance, holdId: number, action: 'capture' | 'void', body?: Record<string, unknown>, key?: string): Promise<{ status: number, body: HoldBody & Record<string, unknown> }> {
  const res = await request(app, 'POST', `/api/holds/${holdId}/${action}`, action === 'capture' ? (body ?? {}) : undefined, key)
  return { status: res.statusCode, body: res.json() }
}

async function user (app: FastifyInstance, id: number): Promise<{ balance: number, held: number, available: number }> {
  const res = await request(app, 'GET', `/api/users/${id}`)
  return res.json()
}

for (const strategy of strategies) {
  for (const groupCommit of ['on', 'off']) {
    t.test(`${strategy}, group commit ${groupCommit}: hold, capture, void and the money rules`, async (t) => {
      const { app } = await build(t, { strategy, env: { GROUP_COMMIT: groupCommit } })
      const payer = await newUser(app, 100)
      const merchant = await newUser(app, 0)

      const first = await hold(app, { userId: payer, amount: 60, expiresInSeconds: 600, metadata: { orderId: 'A-1' } })
      t.equal(first.status, 201)
      t.match(first.body, { userId: payer, amount: 60, status: 'active', captured: 0, released: 0, balance: 100, held: 60, available: 40, entryId: null, payee: null, metadata: { orderId: 'A-1' } })
      const lifetime = Date.parse(first.body.expiresAt) - Date.now()
      t.ok(lifetime > 590_000 && lifetime <= 600_000, `expiresAt is 600 s ahead (${lifetime} ms)`)
      t.match(await user(app, payer), { balance: 100, held: 60, available: 40 })

      // Withdrawals, transfers out and new holds are checked against available; deposits are not limited.
      let res = await request(app, 'PATCH', '/api/balance', { userId: payer, amount: -41 })
      t.equal(res.statusCode, 409)
      t.match(res.json(), { code: 'INSUFFICIENT_FUNDS', userId: payer, balance: 100, available: 40 })
      res = await request(app, 'POST', '/api/transfers', { fromUserId: payer, toUserId: merchant, amount: 41 })
      t.equal(res.statusCode, 409)
      t.match(res.json(), { code: 'INSUFFICIENT_FUNDS', userId: payer, balance: 100, available: 40 })
      const tooBig = await hold(app, { userId: payer, amount: 41 })
      t.equal(tooBig.status, 409)
      t.match(tooBig.body, { code: 'INSUFFICIENT_FUNDS', userId: payer, balance: 100, available: 40 })
      res = await request(app, 'PATCH', '/api/balance', { userId: payer, amount: -40 })
      t.equal(res.statusCode, 200)
      t.match(res.json(), { balance: 60, available: 0 })
      res = await request(app, 'PATCH', '/api/balance', { userId: payer, amount: 5 })
      t.match(res.json(), { balance: 65, available: 5 })

      // Partial capture to a merchant: balance and held fall together, the rest is released, both legs journalled.
      const captured = await settle(app, first.body.holdId, 'capture', { amount: 50, toUserId: merchant, metadata: { invoice: 'I-9' } })
      t.equal(captured.status, 200)
      t.match(captured.body, { holdId: first.body.holdId, status: 'captured', captured: 50, released: 10, balance: 15, held: 0, available: 15, toUserId: merchant })
      t.match(captured.body.payee, { userId: merchant, balance: 50 })
      const payerJournal = await journal(app, payer)
      const captureEntry = payerJournal.at(-1)
      t.match(captureEntry, { id: captured.body.entryId, amount: -50, balanceAfter: 15, kind: 'capture' })
      t.match((await journal(app, merchant)).at(-1), { id: captured.body.payee?.entryId, amount: 50, balanceAfter: 50, kind: 'capture-in' })
      const legs = await sql<{ hold_id: string, metadata: unknown }>(app, 'SELECT hold_id, metadata FROM journal_entries WHERE hold_id IS NOT NULL ORDER BY id')
      t.same(legs.map((leg) => [Number(leg.hold_id), leg.metadata]), [[first.body.holdId, { invoice: 'I-9' }], [first.body.holdId, { invoice: 'I-9' }]], 'both legs carry the hold id and metadata')

      // Exactly one settlement: a second capture or a void is HOLD_NOT_ACTIVE with the status.
      const again = await settle(app, first.body.holdId, 'capture')
      t.equal(again.status, 409)
      t.match(again.body, { code: 'HOLD_NOT_ACTIVE', holdId: first.body.holdId, status: 'captured' })
      const lateVoid = await settle(app, first.body.holdId, 'void')
      t.match(lateVoid.body, { code: 'HOLD_NOT_ACTIVE', status: 'captured' })

      // Capture without a payee, the whole hold by default.
      const second = await hold(app, { userId: payer, amount: 7 })
      t.equal(second.status, 201)
      const whole = await settle(app, second.body.holdId, 'capture')
      t.match(whole.body, { status: 'captured', captured: 7, released: 0, balance: 8, held: 0, available: 8, payee: null })
      t.match((await journal(app, payer)).at(-1), { id: whole.body.entryId, amount: -7, kind: 'capture' })

      // Void: held falls, the balance stays, no journal entry.
      const third = await hold(app, { userId: payer, amount: 8 })
      t.match(third.body, { held: 8, available: 0 })
      const entriesBefore = (await journal(app, payer)).length
      const voided = await settle(app, third.body.holdId, 'void')
      t.equal(voided.status, 200)
      t.match(voided.body, { status: 'voided', captured: 0, released: 8, balance: 8, held: 0, available: 8, entryId: null })
      t.equal((await journal(app, payer)).length, entriesBefore, 'a void writes no journal entry')
      t.match(await settle(app, third.body.holdId, 'capture'), { status: 409, body: { code: 'HOLD_NOT_ACTIVE', status: 'voided' } })

      // Over-capture is refused and changes nothing.
      const fourth = await hold(app, { userId: payer, amount: 3 })
      const before = await snapshot(app)
      const over = await settle(app, fourth.body.holdId, 'capture', { amount: 4 })
      t.equal(over.status, 409)
      t.match(over.body, { code: 'CAPTURE_EXCEEDS_HOLD', holdId: fourth.body.holdId, holdAmount: 3 })
      t.same(await snapshot(app), before, 'a refused capture changes nothing')

      t.match(await user(app, payer), { balance: 8, held: 3, available: 5 })
      await assertBooksBalance(t, app)
    })
  }
}

t.test('expiry needs no process: a 1 s hold is not capturable at 1.5 s and its money is available at once', async (t) => {
  const { app } = await build(t)
  const payer = await newUser(app, 10)
  const created = await hold(app, { userId: payer, amount: 10, expiresInSeconds: 1 })
  t.equal(created.status, 201)
  t.match(await user(app, payer), { balance: 10, held: 10, available: 0 })
  t.equal((await request(app, 'PATCH', '/api/balance', { userId: payer, amount: -1 })).statusCode, 409)
  await new Promise((resolve) => setTimeout(resolve, 1500))
  // Nothing ran in between: reads already count it as released.
  t.match(await user(app, payer), { balance: 10, held: 0, available: 10 })
  const read = await request(app, 'GET', `/api/holds/${created.body.holdId}`)
  t.match(read.json(), { status: 'expired', released: 10, captured: 0, settledAt: created.body.expiresAt })
  const stored = await sql<{ status: string }>(app, 'SELECT status FROM holds WHERE id = $1', [created.body.holdId])
  t.equal(stored[0]?.status, 'active', 'no write has marked it yet: the read judged it by the clock')
  const capture = await settle(app, created.body.holdId, 'capture')
  t.equal(capture.status, 409)
  t.match(capture.body, { code: 'HOLD_EXPIRED', holdId: created.body.holdId, status: 'expired', expiresAt: created.body.expiresAt })
  t.match(await settle(app, created.body.holdId, 'void'), { status: 409, body: { code: 'HOLD_EXPIRED' } })
  const spend = await request(app, 'PATCH', '/api/balance', { userId: payer, amount: -10 })
  t.equal(spend.statusCode, 200, 'the released money can be spent')
  t.match(spend.json(), { balance: 0, available: 0 })
  const settled = await sql<{ status: string, settled_at: Date, expires_at: Date }>(app, 'SELECT status, settled_at, expires_at FROM holds WHERE id = $1', [created.body.holdId])
  t.equal(settled[0]?.status, 'expired', 'the write under the lock settled it')
  t.same(settled[0]?.settled_at, settled[0]?.expires_at)
  await assertBooksBalance(t, app)
})

t.test('idempotency keys: hold, capture and void replay byte for byte, a reuse is a 422', async (t) => {
  const { app } = await build(t)
  const payer = await newUser(app, 50)
  const first = await request(app, 'POST', '/api/holds', { userId: payer, amount: 20, expiresInSeconds: 60 }, 'hold-1')
  const replay = await request(app, 'POST', '/api/holds', { userId: payer, expiresInSeconds: 60, amount: 20 }, 'hold-1')
  t.equal(first.statusCode, 201)
  t.equal(replay.statusCode, 201)
  t.equal(replay.body, first.body, 'same bytes')
  t.equal(replay.headers['idempotent-replayed'], 'true')
  t.equal((await sql(app, 'SELECT 1 FROM holds')).length, 1, 'one hold')
  t.equal((await request(app, 'POST', '/api/holds', { userId: payer, amount: 21, expiresInSeconds: 60 }, 'hold-1')).statusCode, 422)
  t.equal((await request(app, 'POST', '/api/holds', { userId: payer, amount: 20 }, 'hold-1')).statusCode, 422, 'another lifetime is another request')
  const holdId = (first.json() as HoldBody).holdId

  const capture = await request(app, 'POST', `/api/holds/${holdId}/capture`, { amount: 5 }, 'cap-1')
  const captureAgain = await request(app, 'POST', `/api/holds/${holdId}/capture`, { amount: 5 }, 'cap-1')
  t.equal(capture.statusCode, 200)
  t.equal(captureAgain.body, capture.body)
  t.equal(captureAgain.headers['idempotent-replayed'], 'true')
  t.equal((await request(app, 'POST', `/api/holds/${holdId}/capture`, { amount: 6 }, 'cap-1')).statusCode, 422)
  // A refusal is kept under its key too.
  const refused = await request(app, 'POST', `/api/holds/${holdId}/void`, undefined, 'void-1')
  t.equal(refused.statusCode, 409)
  const refusedAgain = await request(app, 'POST', `/api/holds/${holdId}/void`, undefined, 'void-1')
  t.equal(refusedAgain.body, refused.body)
  t.equal(refusedAgain.headers['idempotent-replayed'], 'true')
  t.equal((await request(app, 'POST', `/api/holds/${holdId}/void`, undefined, 'cap-1')).statusCode, 422, 'a capture key on void is a reuse')
  t.equal((await journal(app, payer)).filter((entry) => entry.kind === 'capture').length, 1, 'captured once')
  await assertBooksBalance(t, app)
})

t.test('bad input is a 4xx that changes nothing', async (t) => {
  const { app } = await build(t, { env: { HOLD_MAX_EXPIRES_IN_SECONDS: '3600' } })
  const payer = await newUser(app, 50)
  const { body: active } = await hold(app, { userId: payer, amount: 10 })
  const before = await snapshot(app)
  const cases: Array<[string, 'POST' | 'GET', string, unknown, number, string]> = [
    ['zero amount', 'POST', '/api/holds', { userId: payer, amount: 0 }, 400, 'FST_ERR_VALIDATION'],
    ['negative amount', 'POST', '/api/holds', { userId: payer, amount: -1 }, 400, 'FST_ERR_VALIDATION'],
    ['fractional amount', 'POST', '/api/holds', { userId: payer, amount: 1.5 }, 400, 'FST_ERR_VALIDATION'],
    ['unknown field', 'POST', '/api/holds', { userId: payer, amount: 1, ammount: 1 }, 400, 'FST_ERR_VALIDATION'],
    ['lifetime 0', 'POST', '/api/holds', { userId: payer, amount: 1, expiresInSeconds: 0 }, 400, 'FST_ERR_VALIDATION'],
    ['lifetime over the configured bound', 'POST', '/api/holds', { userId: payer, amount: 1, expiresInSeconds: 3601 }, 400, 'HOLD_EXPIRY_TOO_LONG'],
    ['metadata not flat', 'POST', '/api/holds', { userId: payer, amount: 1, metadata: { a: { b: 'c' } } }, 400, 'FST_ERR_VALIDATION'],
    ['metadata number value', 'POST', '/api/holds', { userId: payer, amount: 1, metadata: { a: 1 } }, 400, 'FST_ERR_VALIDATION'],
    ['metadata bad key', 'POST', '/api/holds', { userId: payer, amount: 1, metadata: { 'a b': 'c' } }, 400, 'FST_ERR_VALIDATION'],
    ['metadata too many keys', 'POST', '/api/holds', { userId: payer, amount: 1, metadata: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v'])) }, 400, 'FST_ERR_VALIDATION'],
    ['metadata value too long', 'PATCH' as 'POST', '/api/balance', { userId: payer, amount: 1, metadata: { a: 'x'.repeat(121) } }, 400, 'FST_ERR_VALIDATION'],
    ['unknown user', 'POST', '/api/holds', { userId: 999999, amount: 1 }, 404, 'USER_NOT_FOUND'],
    ['unknown hold capture', 'POST', '/api/holds/999999/capture', {}, 404, 'HOLD_NOT_FOUND'],
    ['unknown hold void', 'POST', '/api/holds/999999/void', undefined, 404, 'HOLD_NOT_FOUND'],
    ['unknown hold read', 'GET', '/api/holds/999999', undefined, 404, 'HOLD_NOT_FOUND'],
    ['hold id 0', 'GET', '/api/holds/0', undefined, 400, 'FST_ERR_VALIDATION'],
    ['capture to the holder', 'POST', `/api/holds/${active.holdId}/capture`, { toUserId: payer }, 400, 'SAME_USER_CAPTURE'],
    ['capture to an unknown payee', 'POST', `/api/holds/${active.holdId}/capture`, { toUserId: 999999 }, 404, 'USER_NOT_FOUND'],
    ['capture amount 0', 'POST', `/api/holds/${active.holdId}/capture`, { amount: 0 }, 400, 'FST_ERR_VALIDATION'],
    ['bad holds cursor', 'GET', `/api/users/${payer}/holds?before=nope`, undefined, 400, 'INVALID_CURSOR'],
    ['bad holds status', 'GET', `/api/users/${payer}/holds?status=pending`, undefined, 400, 'FST_ERR_VALIDATION'],
    ['holds of an unknown user', 'GET', '/api/users/999999/holds', undefined, 404, 'USER_NOT_FOUND'],
    ['balance at without a zone', 'GET', `/api/users/${payer}/balance?at=2026-01-01T00:00:00`, undefined, 400, 'FST_ERR_VALIDATION'],
    ['balance at of an unknown user', 'GET', `/api/users/999999/balance?at=2026-01-01T00:00:00Z`, undefined, 404, 'USER_NOT_FOUND'],
  ]
  for (const [name, method, url, payload, status, code] of cases) {
    const res = await request(app, method, url, payload)
    t.equal(res.statusCode, status, `${name}: ${res.body}`)
    t.equal((res.json() as { code: string }).code, code, name)
  }
  t.same(await snapshot(app), before, 'nothing changed')
})

t.test('reads: a hold, a user\'s holds by status in keyset pages, and the user\'s figures from one snapshot', async (t) => {
  const { app } = await build(t)
  const payer = await newUser(app, 100)
  const ids: number[] = []
  for (let i = 0; i < 5; i++) ids.push((await hold(app, { userId: payer, amount: 10, metadata: { n: String(i) } })).body.holdId)
  await settle(app, ids[1]!, 'capture', { amount: 4 })
  await settle(app, ids[3]!, 'void')
  const one = await request(app, 'GET', `/api/holds/${ids[1]!}`)
  t.match(one.json(), { holdId: ids[1], userId: payer, amount: 10, status: 'captured', captured: 4, released: 6, metadata: { n: '1' } })

  const pages: number[][] = []
  let cursor: string | null = null
  do {
    const res = await request(app, 'GET', `/api/users/${payer}/holds?limit=2${cursor === null ? '' : `&before=${cursor}`}`)
    const page = res.json() as { items: Array<{ holdId: number }>, nextCursor: string | null }
    pages.push(page.items.map((item) => item.holdId))
    cursor = page.nextCursor
  } while (cursor !== null)
  t.same(pages, [[ids[4], ids[3]], [ids[2], ids[1]], [ids[0]]], 'newest first, no skip, no repeat')
  const active = (await request(app, 'GET', `/api/users/${payer}/holds?status=active`)).json() as { items: Array<{ holdId: number }> }
  t.same(active.items.map((item) => item.holdId), [ids[4], ids[2], ids[0]])
  const voided = (await request(app, 'GET', `/api/users/${payer}/holds?status=voided`)).json() as { items: Array<{ holdId: number }> }
  t.same(voided.items.map((item) => item.holdId), [ids[3]])
  t.match(await user(app, payer), { balance: 96, held: 30, available: 66 })

  const history = (await request(app, 'GET', `/api/users/${payer}/transactions`)).json() as { items: Array<Record<string, unknown>> }
  t.match(history.items[0], { kind: 'capture', amount: -4, holdId: ids[1], metadata: null })
})

t.test('metadata on changes and transfers is stored on the journal and returned by history; it is part of the key', async (t) => {
  const { app } = await build(t)
  const a = await newUser(app, 10)
  const b = await newUser(app, 0)
  t.equal((await request(app, 'PATCH', '/api/balance', { userId: a, amount: -1, metadata: { why: 'fee' } })).statusCode, 200)
  t.equal((await request(app, 'POST', '/api/transfers', { fromUserId: a, toUserId: b, amount: 2, metadata: { orderId: 'X' } })).statusCode, 201)
  const history = (await request(app, 'GET', `/api/users/${a}/transactions`)).json() as { items: Array<{ metadata: unknown, kind: string }> }
  t.same(history.items.map((item) => [item.kind, item.metadata]), [['transfer-out', { orderId: 'X' }], ['change', { why: 'fee' }], ['opening', null]])
  const inLeg = (await request(app, 'GET', `/api/users/${b}/transactions`)).json() as { items: Array<{ metadata: unknown }> }
  t.same(inLeg.items[0]?.metadata, { orderId: 'X' })
  t.equal((await request(app, 'PATCH', '/api/balance', { userId: a, amount: 1, metadata: { x: '1', y: '2' } }, 'meta-key')).statusCode, 200)
  t.equal((await request(app, 'PATCH', '/api/balance', { userId: a, amount: 1, metadata: { y: '2', x: '1' } }, 'meta-key')).headers['idempotent-replayed'], 'true', 'key order is not part of the request')
  t.equal((await request(app, 'PATCH', '/api/balance', { userId: a, amount: 1, metadata: { x: '1' } }, 'meta-key')).statusCode, 422)
  t.equal((await request(app, 'PATCH', '/api/balance', { userId: a, amount: 1 }, 'meta-key')).statusCode, 422)
})

t.test('balance as of an instant agrees with the journal order', async (t) => {
  const { app } = await build(t)
  const payer = await newUser(app, 0)
  const before = new Date(Date.now() - 60_000).toISOString()
  const instants: Array<[string, number]> = []
  for (const amount of [5, 7, -3]) {
    await request(app, 'PATCH', '/api/balance', { userId: payer, amount })
    await new Promise((resolve) => setTimeout(resolve, 15))
    instants.push([new Date().toISOString(), Number((await user(app, payer)).balance)])
    await new Promise((resolve) => setTimeout(resolve, 15))
  }
  const at = async (iso: string): Promise<Record<string, unknown>> => (await request(app, 'GET', `/api/users/${payer}/balance?at=${encodeURIComponent(iso)}`)).json()
  t.match(await at(before), { userId: payer, balance: 0, entryId: null })
  for (const [iso, balance] of instants) t.match(await at(iso), { balance, at: iso })
  const entries = await journal(app, payer)
  t.match(await at(instants[2]![0]), { entryId: entries.at(-1)?.id })
  const order = await sql<{ backwards: string }>(app, `
    SELECT count(*) AS backwards FROM (
      SELECT created_at < lag(created_at) OVER (PARTITION BY user_id ORDER BY id) AS back FROM journal_entries) s WHERE back`)
  t.equal(Number(order[0]?.backwards), 0, 'entry time never goes backwards in id order')
})

t.test('one batch: a capture that names a hold created earlier in the same batch sees it (as a one-at-a-time run would)', async (t) => {
  const { app } = await build(t)
  const payer = await newUser(app, 10)
  const [next] = await sql<{ id: string }>(app, "SELECT nextval('holds_id_seq') + 1 AS id")
  const holdId = Number(next?.id)
  const rows = await sql<{ ord: number, outcome: string, result: { hold: { status: string, captured: number } } }>(app,
    `SELECT ord, outcome, result FROM ledger_batch('advisory', $1, ARRAY['hold', 'capture', 'void'], ARRAY[4, 3, NULL]::BIGINT[],
       ARRAY[NULL, $2, $2]::BIGINT[], ARRAY[60, NULL, NULL]::INT[], ARRAY[NULL, NULL, NULL]::JSONB[], ARRAY[NULL, NULL, NULL]::TEXT[],
       ARRAY[NULL, NULL, NULL]::TEXT[], 0, 9007199254740991, NULL, NULL)`, [payer, holdId])
  t.same(rows.map((row) => [row.ord, row.outcome, row.result.hold.status, row.result.hold.captured]),
    [[1, 'applied', 'active', 0], [2, 'applied', 'captured', 3], [3, 'hold_not_active', 'captured', 3]])
  t.match(await user(app, payer), { balance: 7, held: 0, available: 7 })
  await assertBooksBalance(t, app)
})
