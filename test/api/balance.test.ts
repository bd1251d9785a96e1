import pg from 'pg'
import t from 'tap'
import { build, books, strategies } from '../helper.js'

for (const strategy of strategies) {
  t.test(`PATCH /api/balance (${strategy})`, async (t) => {
    const { app } = await build(t, { strategy })
    const patch = async (payload: unknown) => await app.inject({ method: 'PATCH', url: '/api/balance', payload: payload as object })

    t.test('takes money out and writes one journal entry', async (t) => {
      const before = await books(app, 1)
      const res = await patch({ userId: 1, amount: -2 })
      t.equal(res.statusCode, 200)
      const body = res.json()
      t.match(body, { userId: 1, balance: before.balance - 2, amount: -2 })
      t.ok(Number.isSafeInteger(body.entryId) && body.entryId > 0, 'entryId is an integer id')
      t.same(await books(app, 1), { balance: before.balance - 2, journalSum: before.balance - 2, entries: before.entries + 1 })
    })

    t.test('puts money in', async (t) => {
      const before = await books(app, 1)
      const res = await patch({ userId: 1, amount: 5 })
      t.equal(res.statusCode, 200)
      t.equal(res.json().balance, before.balance + 5)
    })

    t.test('refuses to go below zero with 409 INSUFFICIENT_FUNDS and the balance, changing nothing', async (t) => {
      const before = await books(app, 1)
      const res = await patch({ userId: 1, amount: -(before.balance + 1) })
      t.equal(res.statusCode, 409)
      t.same(res.json(), {
        statusCode: 409,
        code: 'INSUFFICIENT_FUNDS',
        error: 'Conflict',
        message: `Insufficient funds: user 1 has ${before.balance}, the change is ${-(before.balance + 1)}`,
        userId: 1,
        balance: before.balance,
        available: before.balance,
      })
      t.same(await books(app, 1), before)
    })

    t.test('takes the balance exactly to zero', async (t) => {
      const before = await books(app, 1)
      const res = await patch({ userId: 1, amount: -before.balance })
      t.equal(res.statusCode, 200)
      t.equal(res.json().balance, 0)
      t.same(await books(app, 1), { balance: 0, journalSum: 0, entries: before.entries + 1 })
      const again = await patch({ userId: 1, amount: -1 })
      t.equal(again.statusCode, 409)
      t.equal(again.json().balance, 0)
    })

    t.test('refuses to pass the maximum with 409 BALANCE_LIMIT_EXCEEDED, changing nothing', async (t) => {
      const up = await patch({ userId: 1, amount: Number.MAX_SAFE_INTEGER })
      t.equal(up.statusCode, 200)
      t.equal(up.json().balance, Number.MAX_SAFE_INTEGER)
      const before = await books(app, 1)
      const res = await patch({ userId: 1, amount: 1 })
      t.equal(res.statusCode, 409)
      t.match(res.json(), { statusCode: 409, code: 'BALANCE_LIMIT_EXCEEDED', error: 'Conflict', userId: 1, balance: Number.MAX_SAFE_INTEGER })
      t.same(await books(app, 1), before)
      const down = await patch({ userId: 1, amount: -Number.MAX_SAFE_INTEGER })
      t.equal(down.json().balance, 0)
    })

    t.test('404 USER_NOT_FOUND for an unknown user, nothing written', async (t) => {
      const res = await patch({ userId: 424242, amount: 5 })
      t.equal(res.statusCode, 404)
      t.same(res.json(), { statusCode: 404, code: 'USER_NOT_FOUND', error: 'Not Found', message: 'User 424242 does not exist' })
    })
  })
}

t.test('advisory: a withdrawal the committed balance cannot cover is refused without waiting for the user lock', async (t) => {
  const { app, db } = await build(t, { strategy: 'advisory' })
  const holder = new pg.Client({ connectionString: db.url })
  await holder.connect()
  t.teardown(async () => { await holder.end() })
  await holder.query('BEGIN')
  await holder.query('SELECT pg_advisory_xact_lock(1)')

  const started = Date.now()
  const refused = await app.inject({ method: 'PATCH', url: '/api/balance', payload: { userId: 1, amount: -20000 } })
  t.equal(refused.statusCode, 409)
  t.match(refused.json(), { code: 'INSUFFICIENT_FUNDS', balance: 10000 })
  t.ok(Date.now() - started < 2000, `refused while the lock is held (${Date.now() - started} ms)`)

  // A change that could succeed waits for the lock: it is still pending while the holder keeps it.
  let settled = false
  const pending = app.inject({ method: 'PATCH', url: '/api/balance', payload: { userId: 1, amount: -1 } }).then((res) => { settled = true; return res })
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.notOk(settled, 'a withdrawal the balance covers waits for the lock')
  await holder.query('COMMIT')
  const applied = await pending
  t.equal(applied.statusCode, 200)
  t.equal(applied.json().balance, 9999)
  t.same(await books(app, 1), { balance: 9999, journalSum: 9999, entries: 2 })
})
