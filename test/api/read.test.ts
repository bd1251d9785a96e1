import t from 'tap'
import { build } from '../helper.js'

t.test('GET /api/users/:id', async (t) => {
  const { app } = await build(t)
  const res = await app.inject({ method: 'GET', url: '/api/users/1' })
  t.equal(res.statusCode, 200)
  const body = res.json()
  t.same(Object.keys(body).sort(), ['available', 'balance', 'createdAt', 'held', 'id', 'updatedAt'])
  t.equal(body.id, 1)
  t.equal(body.balance, 10000)
  t.ok(!Number.isNaN(Date.parse(body.createdAt)) && !Number.isNaN(Date.parse(body.updatedAt)), 'ISO timestamps')

  // Timestamps travel in milliseconds: let the clock (the one PostgreSQL reads too) pass the seed's before the change.
  while (Date.now() <= Date.parse(body.updatedAt)) await new Promise((resolve) => setTimeout(resolve, 1))
  t.equal((await app.inject({ method: 'PATCH', url: '/api/balance', payload: { userId: 1, amount: -100 } })).statusCode, 200)
  const after = await app.inject({ method: 'GET', url: '/api/users/1' })
  t.equal(after.json().balance, 9900)
  t.ok(Date.parse(after.json().updatedAt) > Date.parse(body.updatedAt), `updatedAt moves on a change (${body.updatedAt} → ${after.json().updatedAt})`)
  t.equal(after.json().createdAt, body.createdAt, 'createdAt does not')

  const missing = await app.inject({ method: 'GET', url: '/api/users/2' })
  t.equal(missing.statusCode, 404)
  t.same(missing.json(), { statusCode: 404, code: 'USER_NOT_FOUND', error: 'Not Found', message: 'User 2 does not exist' })
})

t.test('GET /api/health', async (t) => {
  const { app } = await build(t)
  const res = await app.inject({ method: 'GET', url: '/api/health' })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { status: 'ok', db: 'up' })
})
