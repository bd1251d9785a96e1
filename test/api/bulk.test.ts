import t, { type Test } from 'tap'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { BalanceClient } from '../../src/client/index.js'
import { build, listen, sql, strategies } from '../helper.js'
import { MAX, assertBooksBalance, balanceOf, journal, newUser, request, snapshot } from '../support/ledger.js'

/**
 * POST /api/balance/batch through the API: every change of a default bulk request gets exactly the answer a PATCH
 * would (for every strategy, group commit on and off); an atomic one applies all in one transaction or nothing;
 * limits, bad items and keys.
 */

type Json = Record<string, unknown>

async function bulk (app: FastifyInstance, body: unknown, key?: string): Promise<LightMyRequestResponse> {
  return await app.inject({
    method: 'POST',
    url: '/api/balance/batch',
    payload: body as object,
    headers: { 'content-type': 'application/json', ...(key === undefined ? {} : { 'idempotency-key': key }) },
  })
}

async function hold (app: FastifyInstance, userId: number, amount: number, expiresInSeconds = 600): Promise<void> {
  const res = await request(app, 'POST', '/api/holds', { userId, amount, expiresInSeconds })
  if (res.statusCode !== 201) throw new Error(`POST /api/holds answered ${res.statusCode}: ${res.body}`)
}

/** A change of the comparison script, naming its user by role so it can be played on two sets of users. */
interface Step { role: 'a' | 'b' | 'missing', amount: number, key?: string, metadata?: Record<string, string> }

const MISSING = 999_999
const script: Step[] = [
  { role: 'a', amount: -50 },
  { role: 'b', amount: 10, key: 'k1' },
  { role: 'a', amount: -30 }, // beyond available: 20 of 50 (30 held)
  { role: 'missing', amount: 1 },
  { role: 'b', amount: 10, key: 'k1' }, // the same key and change again: a replay
  { role: 'b', amount: 11, key: 'k1' }, // the same key, another change: a reuse
  { role: 'b', amount: MAX }, // past 2^53 − 1
  { role: 'a', amount: -20, metadata: { orderId: 'A-1' } },
  { role: 'b', amount: -15, key: 'k2' },
  { role: 'a', amount: 5 },
]

/** An answer with the side's own ids and keys taken out, so both sides' answers can be compared. */
function normalized (status: number, body: Json, replayed: boolean, ids: Record<number, string>): Json {
  const { entryId, userId, message, ...rest } = body
  let text = typeof message === 'string' ? message : undefined
  for (const [id, role] of Object.entries(ids)) text = text?.replaceAll(`user ${id} `, `user ${role} `)
  return {
    status,
    ...rest,
    ...(userId === undefined ? {} : { userId: ids[userId as number] ?? userId }),
    ...(entryId === undefined ? {} : { entryId: typeof entryId }),
    ...(text === undefined ? {} : { message: text }),
    replayed,
  }
}

async function side (app: FastifyInstance, label: string, steps: Step[]): Promise<{ users: Record<Step['role'], number>, ids: Record<number, string>, changes: Json[] }> {
  const a = await newUser(app, 100)
  const b = await newUser(app, 5)
  await hold(app, a, 30)
  const users = { a, b, missing: MISSING }
  const changes = steps.map(({ role, amount, key, metadata }) => ({
    userId: users[role], amount, ...(key === undefined ? {} : { idempotencyKey: `${label}-${key}` }), ...(metadata === undefined ? {} : { metadata }),
  }))
  return { users, ids: { [a]: 'a', [b]: 'b' }, changes }
}

/** The steps played as PATCHes one by one on one set of users and as one bulk request on another: the same answers. */
async function compare (t: Test, app: FastifyInstance, label: string, steps: Step[]): Promise<Json[]> {
  const singles = await side(app, `${label}-patch`, steps)
  const expected: Json[] = []
  for (const { idempotencyKey, ...body } of singles.changes) {
    const res = await request(app, 'PATCH', '/api/balance', body, idempotencyKey as string | undefined)
    expected.push(normalized(res.statusCode, res.json(), res.headers['idempotent-replayed'] === 'true', singles.ids))
  }
  const bulked = await side(app, `${label}-bulk`, steps)
  const res = await bulk(app, { changes: bulked.changes })
  t.equal(res.statusCode, 200, res.body)
  const results = (res.json() as { results: Json[] }).results
  const got = results.map(({ status, replayed, ...body }) => normalized(status as number, body, replayed === true, bulked.ids))
  t.same(got, expected, `${label}: statuses and bodies, in order, equal those of the same changes sent as PATCHes one by one`)
  // The journals of both sides are the same changes in the same order.
  const shape = (rows: Awaited<ReturnType<typeof journal>>): unknown => rows.map(({ amount, balanceAfter, kind }) => ({ amount, balanceAfter, kind }))
  for (const role of ['a', 'b'] as const) t.same(shape(await journal(app, bulked.users[role])), shape(await journal(app, singles.users[role])), `${label}: user ${role}'s journal`)
  const keyed = (await journal(app, bulked.users.b)).filter((entry) => entry.idempotencyKey !== null).map((entry) => entry.idempotencyKey)
  t.same(keyed, steps.some((step) => step.key !== undefined) ? [`${label}-bulk-k1`, `${label}-bulk-k2`] : [], `${label}: entries carry their keys; a replay or a reuse wrote nothing`)
  return got
}

/** 300 changes to one user in one request (some beyond its balance): every answer is the one an in-order run gives. */
async function hotUser (t: Test, app: FastifyInstance, keyed: boolean): Promise<void> {
  const hot = await newUser(app, 0)
  const many = Array.from({ length: 300 }, (_, i) => ({ userId: hot, amount: i % 3 === 2 ? -2 : 1, ...(keyed ? { idempotencyKey: `hot-${i}` } : {}) }))
  const storm = await bulk(app, { changes: many })
  let running = 0
  const inOrder = (storm.json() as { results: Json[] }).results.every((result, i) => {
    const amount = many[i]!.amount
    if (running + amount < 0) return result.status === 409 && result.balance === running
    running += amount
    return result.status === 200 && result.balance === running
  })
  t.ok(inOrder, `${keyed ? 'keyed' : 'keyless'}: every answer of 300 to one user is the one an in-order run gives`)
  t.equal(await balanceOf(app, hot), running)
}

for (const strategy of strategies) {
  for (const groupCommit of ['on', 'off']) {
    t.test(`${strategy}, group commit ${groupCommit}: each change of a bulk request answers as its PATCH would`, async (t) => {
      const { app } = await build(t, { strategy, env: { GROUP_COMMIT: groupCommit } })
      // With keys, the changes go through the users' lanes; without, in one transaction: the same answers either way.
      const got = await compare(t, app, 'keyed', script)
      t.same(got.map((answer) => answer.status), [200, 200, 409, 404, 200, 422, 409, 200, 200, 200], 'the script reaches every answer')
      const keyless = await compare(t, app, 'keyless', script.map(({ key, ...step }) => step))
      t.same(keyless.map((answer) => answer.status), [200, 200, 409, 404, 200, 200, 409, 200, 200, 200])
      await hotUser(t, app, true)
      await hotUser(t, app, false)
      await assertBooksBalance(t, app)
    })
  }
}

for (const strategy of strategies) {
  t.test(`${strategy}: atomic bulk: all in one transaction, or nothing`, async (t) => {
    const { app } = await build(t, { strategy })
    const a = await newUser(app, 10)
    const b = await newUser(app, 50)
    await hold(app, b, 40)

    // b has 50 of which 10 available: the third change is refused, so none applies.
    const before = await snapshot(app)
    let res = await bulk(app, { atomic: true, changes: [{ userId: a, amount: 5 }, { userId: b, amount: -5 }, { userId: b, amount: -6 }, { userId: MISSING, amount: 1 }] })
    t.equal(res.statusCode, 409, res.body)
    t.same(res.json(), {
      statusCode: 409,
      code: 'BULK_REFUSED',
      error: 'Conflict',
      message: `Nothing was applied: change 2 was refused (INSUFFICIENT_FUNDS): Insufficient funds: user ${b} has 45, of which 5 is available (the rest is held), the change is -6`,
      index: 2,
      item: { status: 409, statusCode: 409, code: 'INSUFFICIENT_FUNDS', error: 'Conflict', message: `Insufficient funds: user ${b} has 45, of which 5 is available (the rest is held), the change is -6`, userId: b, balance: 45, available: 5 },
    }, 'the first refused change, with the running balance it met')
    t.same(await snapshot(app), before, 'nothing changed')

    res = await bulk(app, { atomic: true, changes: [{ userId: a, amount: 1 }, { userId: MISSING, amount: 1 }] })
    t.equal(res.statusCode, 409)
    t.match(res.json(), { code: 'BULK_REFUSED', index: 1, item: { status: 404, code: 'USER_NOT_FOUND' } })
    res = await bulk(app, { atomic: true, changes: [{ userId: a, amount: MAX - 10 }, { userId: a, amount: 1 }] })
    t.match(res.json(), { code: 'BULK_REFUSED', index: 1, item: { status: 409, code: 'BALANCE_LIMIT_EXCEEDED', balance: MAX } })
    t.same(await snapshot(app), before, 'nothing changed by the refusals')

    // Users out of id order, one user twice: the running balance decides, the answers are in array order.
    res = await bulk(app, { atomic: true, changes: [{ userId: b, amount: -10 }, { userId: a, amount: 5 }, { userId: a, amount: -15, metadata: { batch: 'x' } }, { userId: b, amount: 7 }] })
    t.equal(res.statusCode, 200, res.body)
    const results = (res.json() as { results: Json[] }).results
    t.match(results, [
      { status: 200, userId: b, amount: -10, balance: 40, available: 0 },
      { status: 200, userId: a, amount: 5, balance: 15, available: 15 },
      { status: 200, userId: a, amount: -15, balance: 0, available: 0 },
      { status: 200, userId: b, amount: 7, balance: 47, available: 7 },
    ])
    const ids = results.map((result) => result.entryId as number)
    t.same([...ids].sort((x, y) => x - y), ids, 'entry ids ascend in array order')
    const [tx] = await sql<{ transactions: string, entries: string }>(app,
      'SELECT count(DISTINCT xmin::TEXT) AS transactions, count(*) AS entries FROM journal_entries WHERE id = ANY ($1::BIGINT[])', [ids])
    t.same(tx, { transactions: '1', entries: '4' }, 'every entry written by one transaction')
    t.same((await journal(app, a)).map((e) => e.balanceAfter), [10, 15, 0], "a's journal chains")

    // An expired hold is released under the lock first, as for a single change.
    const c = await newUser(app, 20)
    await hold(app, c, 20, 1)
    await new Promise((resolve) => setTimeout(resolve, 1100))
    res = await bulk(app, { atomic: true, changes: [{ userId: c, amount: -20 }] })
    t.equal(res.statusCode, 200, res.body)
    t.match(res.json(), { results: [{ status: 200, balance: 0, available: 0 }] })

    // Concurrent atomic bulks naming users in opposite orders, with transfers between them: no deadlock.
    const users = [await newUser(app, 1000), await newUser(app, 1000), await newUser(app, 1000)]
    const answers = await Promise.all(Array.from({ length: 40 }, async (_, i) => {
      if (i % 4 === 3) return await request(app, 'POST', '/api/transfers', { fromUserId: users[i % 3]!, toUserId: users[(i + 1) % 3]!, amount: 1 })
      const order = i % 2 === 0 ? users : [...users].reverse()
      return await bulk(app, { atomic: true, changes: order.map((userId, j) => ({ userId, amount: j === 0 ? -2 : 1 })) })
    }))
    t.same(answers.map((answer) => answer.statusCode).filter((status) => status !== 200 && status !== 201), [], 'all applied')
    await assertBooksBalance(t, app)
  })
}

t.test('keys: per change by default, per request when atomic', async (t) => {
  const { app } = await build(t)
  const a = await newUser(app, 100)

  // A key first used by a PATCH is a replay in a bulk change, and the other way round.
  let res = await request(app, 'PATCH', '/api/balance', { userId: a, amount: -1 }, 'shared-1')
  const patched = res.json() as Json
  res = await bulk(app, { changes: [{ userId: a, amount: -1, idempotencyKey: 'shared-1' }, { userId: a, amount: -2, idempotencyKey: 'shared-2' }, { userId: a, amount: -9, idempotencyKey: 'shared-1' }] })
  const [replay, fresh, reused] = (res.json() as { results: Json[] }).results
  t.same(replay, { status: 200, ...patched, replayed: true }, 'the PATCH answer, replayed')
  t.match(reused, { status: 422, code: 'IDEMPOTENCY_KEY_REUSED' })
  res = await request(app, 'PATCH', '/api/balance', { userId: a, amount: -2 }, 'shared-2')
  t.equal(res.headers['idempotent-replayed'], 'true')
  t.same({ status: 200, ...(res.json() as Json) }, fresh, 'the bulk change answer, replayed by a PATCH')
  t.equal(await balanceOf(app, a), 97)

  // The same bulk request again: every keyed change replays.
  const again = await bulk(app, { changes: [{ userId: a, amount: -2, idempotencyKey: 'shared-2' }] })
  t.same((again.json() as { results: Json[] }).results, [{ ...fresh, replayed: true }])

  // Atomic: one Idempotency-Key for the whole request.
  const changes = [{ userId: a, amount: -3 }, { userId: a, amount: 1 }]
  const first = await bulk(app, { atomic: true, changes }, 'atomic-1')
  t.equal(first.statusCode, 200)
  t.equal(first.headers['idempotent-replayed'], undefined)
  const second = await bulk(app, { atomic: true, changes }, 'atomic-1')
  t.equal(second.statusCode, 200)
  t.equal(second.headers['idempotent-replayed'], 'true')
  t.equal(second.body, first.body, 'replayed byte for byte')
  t.equal(await balanceOf(app, a), 95, 'applied once')
  const keyedEntries = (await journal(app, a)).filter((entry) => entry.idempotencyKey === 'atomic-1')
  t.equal(keyedEntries.length, 2, 'its entries carry the key')
  res = await bulk(app, { atomic: true, changes: [{ userId: a, amount: -4 }] }, 'atomic-1')
  t.equal(res.statusCode, 422)
  t.equal(res.json().code, 'IDEMPOTENCY_KEY_REUSED')
  res = await request(app, 'PATCH', '/api/balance', { userId: a, amount: -3 }, 'atomic-1')
  t.equal(res.statusCode, 422, 'a bulk key is not a PATCH key')

  // A refused atomic request is kept under its key too.
  const refused = await bulk(app, { atomic: true, changes: [{ userId: a, amount: -1000 }] }, 'atomic-2')
  t.equal(refused.statusCode, 409)
  const refusedAgain = await bulk(app, { atomic: true, changes: [{ userId: a, amount: -1000 }] }, 'atomic-2')
  t.equal(refusedAgain.statusCode, 409)
  t.equal(refusedAgain.headers['idempotent-replayed'], 'true')
  t.equal(refusedAgain.body, refused.body)

  // Keys where they do not belong.
  const before = await snapshot(app)
  res = await bulk(app, { atomic: true, changes: [{ userId: a, amount: 1 }, { userId: a, amount: 1, idempotencyKey: 'x' }] })
  t.equal(res.statusCode, 400)
  t.match(res.json(), { code: 'BULK_ITEM_KEY_IN_ATOMIC', index: 1 })
  res = await bulk(app, { changes: [{ userId: a, amount: 1 }] }, 'header-key')
  t.equal(res.statusCode, 400)
  t.equal(res.json().code, 'BULK_KEY_NEEDS_ATOMIC')
  t.same(await snapshot(app), before, 'refused requests changed nothing')
  await assertBooksBalance(t, app)
})

t.test('limits and bad items', async (t) => {
  const { app } = await build(t, { env: { BULK_MAX_CHANGES: '5' } })
  const a = await newUser(app, 100)
  const before = await snapshot(app)
  const item = { userId: a, amount: 1 }

  let res = await bulk(app, { changes: Array.from({ length: 6 }, () => item) })
  t.equal(res.statusCode, 413)
  t.match(res.json(), { statusCode: 413, code: 'BULK_TOO_MANY_CHANGES', maxChanges: 5 })
  res = await bulk(app, { atomic: true, changes: Array.from({ length: 6 }, () => item) })
  t.equal(res.json().code, 'BULK_TOO_MANY_CHANGES')
  res = await bulk(app, JSON.stringify({ changes: [{ ...item, metadata: { pad: 'x'.repeat(120) } }], pad: 'x'.repeat(6 * 4096) }))
  t.equal(res.statusCode, 413)
  t.equal(res.json().code, 'FST_ERR_CTP_BODY_TOO_LARGE')

  const bad: Array<[unknown, RegExp]> = [
    [{ changes: [] }, /^body\/changes must NOT have fewer than 1 items/],
    [{}, /must have required property 'changes'/],
    [{ changes: [item, item, item, { userId: a, amount: 0 }] }, /^body\/changes\/3\/amount /],
    [{ changes: [item, { userId: a, amount: '5' }] }, /^body\/changes\/1\/amount must be integer/],
    [{ changes: [item, { userId: a, ammount: 5 }] }, /^body\/changes\/1 must have required property 'amount'/],
    [{ changes: [item, { ...item, idempotencyKey: '' }] }, /^body\/changes\/1\/idempotencyKey /],
    [{ changes: [item], atomic: 'yes' }, /^body\/atomic must be boolean/],
    [{ changes: [item], extra: 1 }, /must NOT have additional properties/],
  ]
  for (const [body, message] of bad) {
    res = await bulk(app, body)
    t.equal(res.statusCode, 400, JSON.stringify(body))
    t.equal(res.json().code, 'FST_ERR_VALIDATION')
    t.match(res.json().message, message)
  }
  res = await bulk(app, `{"changes":[{"userId":${a},"amount":1.0}]}`)
  t.equal(res.statusCode, 400, 'an integer is judged as written')
  t.same(await snapshot(app), before, 'nothing changed')

  // Within the limit, a body far above a PATCH's 4 KiB is taken.
  const big = Array.from({ length: 5 }, (_, i) => ({ ...item, metadata: Object.fromEntries(Array.from({ length: 16 }, (_, k) => [`key${k}`, `${i}`.padEnd(100, 'v')])) }))
  t.ok(JSON.stringify({ changes: big }).length > 4096)
  res = await bulk(app, { changes: big })
  t.equal(res.statusCode, 200, res.body)
  t.equal(await balanceOf(app, a), 105)
})

t.test('the OpenAPI document describes the route', async (t) => {
  const { app } = await build(t)
  const doc = (await app.inject('/docs/json')).json() as { paths: Record<string, Record<string, { responses: Record<string, unknown> }>> }
  const operation = doc.paths['/api/balance/batch']?.post
  t.ok(operation, 'POST /api/balance/batch is documented')
  t.same(Object.keys(operation?.responses ?? {}).filter((status) => ['200', '400', '409', '413', '422'].includes(status)).sort(), ['200', '400', '409', '413', '422'])
})

t.test('the client: changeBalances', async (t) => {
  const { app } = await build(t)
  const baseUrl = await listen(app)
  const api = new BalanceClient({ baseUrl })
  const a = await newUser(app, 10)

  const each = await api.changeBalances({ changes: [{ userId: a, amount: -4 }, { userId: a, amount: -20 }, { userId: a, amount: 1, idempotencyKey: 'mine' }] })
  t.match(each.data.results, [{ status: 200, balance: 6 }, { status: 409, code: 'INSUFFICIENT_FUNDS' }, { status: 200, balance: 7 }])
  t.equal(each.changeKeys?.length, 3, 'a key per change')
  t.equal(each.changeKeys?.[2], 'mine', 'the caller\'s key kept')
  t.equal(each.idempotencyKey, undefined)

  const atomic = await api.changeBalances({ atomic: true, changes: [{ userId: a, amount: -7 }] }, { idempotencyKey: 'whole' })
  t.match(atomic.data.results, [{ status: 200, balance: 0 }])
  t.equal(atomic.idempotencyKey, 'whole')
  const again = await api.changeBalances({ atomic: true, changes: [{ userId: a, amount: -7 }] }, { idempotencyKey: 'whole' })
  t.equal(again.replayed, true)
  await t.rejects(api.changeBalances({ atomic: true, changes: [{ userId: a, amount: -1 }] }), { status: 409, code: 'BULK_REFUSED' })
  await t.rejects(api.changeBalances({ changes: [{ userId: a, amount: 1 }] }, { idempotencyKey: 'x' }), RangeError)
})
