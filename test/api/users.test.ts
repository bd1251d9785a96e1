import t from 'tap'
import { build, sql, strategies } from '../helper.js'
import { MAX, assertBooksBalance, journal, request, snapshot } from '../support/ledger.js'

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/

for (const strategy of strategies) {
  t.test(`POST /api/users (${strategy})`, async (t) => {
    const { app } = await build(t, { strategy })

    t.test('201 with an initial balance, written as the opening journal entry', async (t) => {
      const res = await request(app, 'POST', '/api/users', { balance: 500 })
      t.equal(res.statusCode, 201)
      t.notOk(res.headers['idempotent-replayed'], 'not a replay')
      const body = res.json()
      t.same(Object.keys(body).sort(), ['available', 'balance', 'createdAt', 'held', 'id', 'updatedAt'])
      t.equal(body.id, 2, 'ids follow the seeded user 1')
      t.equal(body.balance, 500)
      t.match(body.createdAt, ISO)
      t.equal(body.updatedAt, body.createdAt)
      t.same(await journal(app, body.id), [
        { id: 2, userId: 2, amount: 500, balanceAfter: 500, kind: 'opening', transferId: null, idempotencyKey: null },
      ])
      const read = await request(app, 'GET', `/api/users/${body.id}`)
      t.equal(read.statusCode, 200)
      t.same(read.json(), body, 'GET /api/users/:id shows the same user')
    })

    t.test('balance defaults to 0, and 0 writes no journal entry', async (t) => {
      const res = await request(app, 'POST', '/api/users', {})
      t.equal(res.statusCode, 201)
      t.equal(res.json().balance, 0)
      t.same(await journal(app, res.json().id), [])
      const zero = await request(app, 'POST', '/api/users', { balance: 0 })
      t.equal(zero.statusCode, 201)
      t.equal(zero.json().id, res.json().id + 1)
      t.same(await journal(app, zero.json().id), [])
    })

    t.test('the maximum balance is accepted', async (t) => {
      const res = await request(app, 'POST', '/api/users', { balance: MAX })
      t.equal(res.statusCode, 201)
      t.equal(res.json().balance, MAX)
      t.match(await journal(app, res.json().id), [{ amount: MAX, balanceAfter: MAX, kind: 'opening' }])
    })

    t.test('400 for bad bodies, and nothing is created', async (t) => {
      const before = await snapshot(app)
      const cases: Array<[string, unknown]> = [
        ['negative balance', { balance: -1 }],
        ['fractional balance', { balance: 1.5 }],
        ['balance as a string', { balance: '5' }],
        ['balance above 2^53 - 1', { balance: MAX + 1 }],
        ['unknown property', { balance: 5, name: 'x' }],
        ['a typo', { balanse: 5 }],
        ['not an object', [1]],
      ]
      for (const [name, payload] of cases) {
        const res = await request(app, 'POST', '/api/users', payload)
        t.equal(res.statusCode, 400, name)
        t.equal(res.json().code, 'FST_ERR_VALIDATION', name)
      }
      const malformed = await app.inject({ method: 'POST', url: '/api/users', headers: { 'content-type': 'application/json' }, payload: '{"balance":' })
      t.equal(malformed.statusCode, 400, 'malformed JSON')
      t.equal(malformed.json().code, 'FST_ERR_CTP_INVALID_JSON_BODY')
      t.same(await snapshot(app), before, 'nothing written')
    })

    t.test('an Idempotency-Key makes creation safe to retry', async (t) => {
      const first = await request(app, 'POST', '/api/users', { balance: 70 }, 'create-user-1')
      t.equal(first.statusCode, 201)
      const again = await request(app, 'POST', '/api/users', { balance: 70 }, 'create-user-1')
      t.equal(again.statusCode, 201)
      t.equal(again.headers['idempotent-replayed'], 'true')
      t.equal(again.body, first.body, 'the first answer, byte for byte')
      const entries = await journal(app, first.json().id)
      t.equal(entries.length, 1, 'one opening entry')
      t.match(entries[0], { userId: first.json().id, amount: 70, balanceAfter: 70, kind: 'opening', transferId: null, idempotencyKey: 'create-user-1' })
      const [users] = await sql<{ n: string }>(app, 'SELECT count(*) AS n FROM users WHERE id > $1', [first.json().id])
      t.equal(Number(users?.n), 0, 'no second user')
      const reused = await request(app, 'POST', '/api/users', { balance: 71 }, 'create-user-1')
      t.equal(reused.statusCode, 422)
      t.equal(reused.json().code, 'IDEMPOTENCY_KEY_REUSED')
    })

    t.test('an omitted default and an explicit 0 are the same request under one key', async (t) => {
      const first = await request(app, 'POST', '/api/users', {}, 'create-user-default')
      const again = await request(app, 'POST', '/api/users', { balance: 0 }, 'create-user-default')
      t.equal(again.statusCode, 201)
      t.equal(again.headers['idempotent-replayed'], 'true')
      t.equal(again.body, first.body)
    })

    t.test('books balance', async (t) => { await assertBooksBalance(t, app) })
  })
}
