import t from 'tap'
import { build, sql, strategies, testConfig } from '../helper.js'
import { MAX, assertBooksBalance, balanceOf, journal, newUser, request, snapshot } from '../support/ledger.js'
import { IDEMPOTENCY_PURGE_LIMIT } from '../../src/services/idempotency.js'

const REUSED = {
  statusCode: 422,
  code: 'IDEMPOTENCY_KEY_REUSED',
  error: 'Unprocessable Entity',
  message: 'This Idempotency-Key was already used for a different request; use a new key for a new request',
}

t.test('IDEMPOTENCY_TTL_HOURS is validated: 1..8760, default 24', async (t) => {
  t.equal(testConfig('postgres://x/y').IDEMPOTENCY_TTL_HOURS, 24)
  t.equal(testConfig('postgres://x/y', 'advisory', { IDEMPOTENCY_TTL_HOURS: '8760' }).IDEMPOTENCY_TTL_HOURS, 8760)
  for (const bad of ['0', '8761', '1.5', 'day']) {
    t.throws(() => testConfig('postgres://x/y', 'advisory', { IDEMPOTENCY_TTL_HOURS: bad }), /IDEMPOTENCY_TTL_HOURS/, bad)
  }
})

for (const strategy of strategies) {
  t.test(`Idempotency-Key (${strategy})`, async (t) => {
    const { app } = await build(t, { strategy })
    const patch = async (payload: unknown, key?: string) => await request(app, 'PATCH', '/api/balance', payload, key)

    t.test('a retry after success replays the first answer and changes nothing', async (t) => {
      const user = await newUser(app, 100)
      const first = await patch({ userId: user, amount: -30 }, 'pay-1')
      t.equal(first.statusCode, 200)
      t.notOk(first.headers['idempotent-replayed'], 'the first answer is not a replay')
      const entryId = first.json().entryId
      t.same(first.json(), { userId: user, balance: 70, amount: -30, entryId, available: 70 })
      const before = await snapshot(app)
      // Same request with the properties in another order: the same request.
      const again = await patch({ amount: -30, userId: user }, 'pay-1')
      t.equal(again.statusCode, 200)
      t.equal(again.headers['idempotent-replayed'], 'true')
      t.equal(again.body, first.body, 'the first body, byte for byte')
      t.same(await snapshot(app), before, 'nothing changed')
      t.match(await journal(app, user), [{ kind: 'opening' }, { id: entryId, amount: -30, balanceAfter: 70, kind: 'change', idempotencyKey: 'pay-1' }])
      const [row] = await sql<{ entry_ids: string[], result: unknown, ttl: string }>(app,
        'SELECT entry_ids, result, extract(epoch FROM expires_at - created_at) AS ttl FROM idempotency_keys WHERE key = $1', ['pay-1'])
      t.same(row?.entry_ids.map(Number), [entryId], 'the key points at its journal entry')
      t.same(row?.result, { operation: 'change', outcome: 'applied', userId: user, amount: -30, balance: 70, available: 70, entryId })
      t.equal(Number(row?.ttl), 24 * 3600, 'kept IDEMPOTENCY_TTL_HOURS (default 24)')
    })

    t.test('the same key with a different body, or on another route, is 422 and changes nothing', async (t) => {
      const user = await newUser(app, 100)
      const first = await patch({ userId: user, amount: -10 }, 'pay-2')
      t.equal(first.statusCode, 200)
      const before = await snapshot(app)
      const otherAmount = await patch({ userId: user, amount: -11 }, 'pay-2')
      t.equal(otherAmount.statusCode, 422)
      t.same(otherAmount.json(), REUSED)
      t.notOk(otherAmount.headers['idempotent-replayed'])
      const otherRoute = await request(app, 'POST', '/api/transfers', { fromUserId: user, toUserId: 1, amount: 10 }, 'pay-2')
      t.equal(otherRoute.statusCode, 422)
      t.same(otherRoute.json(), REUSED)
      const createUser = await request(app, 'POST', '/api/users', { balance: 10 }, 'pay-2')
      t.equal(createUser.statusCode, 422)
      t.same(await snapshot(app), before, 'nothing changed')
    })

    t.test('409 INSUFFICIENT_FUNDS is kept: a retry replays it even after funds arrive', async (t) => {
      const user = await newUser(app, 5)
      const first = await patch({ userId: user, amount: -6 }, 'pay-3')
      t.equal(first.statusCode, 409)
      t.same(first.json(), {
        statusCode: 409, code: 'INSUFFICIENT_FUNDS', error: 'Conflict', message: `Insufficient funds: user ${user} has 5, the change is -6`, userId: user, balance: 5, available: 5,
      })
      t.equal((await patch({ userId: user, amount: 100 })).statusCode, 200, 'funds arrive (no key)')
      const again = await patch({ userId: user, amount: -6 }, 'pay-3')
      t.equal(again.statusCode, 409)
      t.equal(again.headers['idempotent-replayed'], 'true')
      t.equal(again.body, first.body, 'the first refusal again')
      t.equal(await balanceOf(app, user), 105)
      const fresh = await patch({ userId: user, amount: -6 }, 'pay-3b')
      t.equal(fresh.statusCode, 200, 'a new key is a new attempt')
      const [row] = await sql<{ entry_ids: string[] }>(app, 'SELECT entry_ids FROM idempotency_keys WHERE key = $1', ['pay-3'])
      t.same(row?.entry_ids, [], 'a refusal points at no journal entry')
    })

    t.test('409 BALANCE_LIMIT_EXCEEDED is kept too', async (t) => {
      const user = await newUser(app, MAX)
      const first = await patch({ userId: user, amount: 1 }, 'pay-4')
      t.equal(first.statusCode, 409)
      t.equal(first.json().code, 'BALANCE_LIMIT_EXCEEDED')
      await patch({ userId: user, amount: -10 })
      const again = await patch({ userId: user, amount: 1 }, 'pay-4')
      t.equal(again.statusCode, 409)
      t.equal(again.headers['idempotent-replayed'], 'true')
      t.equal(again.body, first.body)
    })

    t.test('404 USER_NOT_FOUND is kept: the key names an attempt that found no user', async (t) => {
      const [next] = await sql<{ id: string }>(app, "SELECT last_value + 1 AS id FROM pg_sequences WHERE sequencename = 'users_id_seq'")
      const futureUser = Number(next?.id)
      const first = await patch({ userId: futureUser, amount: 5 }, 'pay-5')
      t.equal(first.statusCode, 404)
      t.equal(await newUser(app, 0), futureUser, 'the user now exists')
      const again = await patch({ userId: futureUser, amount: 5 }, 'pay-5')
      t.equal(again.statusCode, 404)
      t.equal(again.headers['idempotent-replayed'], 'true')
      t.equal(again.body, first.body)
      t.equal(await balanceOf(app, futureUser), 0, 'the replay changed nothing')
    })

    t.test('400s are not kept: the same key then works for a valid request', async (t) => {
      const user = await newUser(app, 50)
      const bad = await patch({ userId: user, amount: 0 }, 'pay-6')
      t.equal(bad.statusCode, 400)
      const sameUser = await request(app, 'POST', '/api/transfers', { fromUserId: user, toUserId: user, amount: 1 }, 'pay-6')
      t.equal(sameUser.statusCode, 400)
      t.equal(sameUser.json().code, 'SAME_USER_TRANSFER')
      const [count] = await sql<{ n: string }>(app, 'SELECT count(*) AS n FROM idempotency_keys WHERE key = $1', ['pay-6'])
      t.equal(Number(count?.n), 0, 'no key stored')
      const good = await patch({ userId: user, amount: -1 }, 'pay-6')
      t.equal(good.statusCode, 200)
      t.notOk(good.headers['idempotent-replayed'])
    })

    t.test('the header is validated: 1..255 printable ASCII characters', async (t) => {
      const user = await newUser(app, 50)
      const before = await snapshot(app)
      for (const [name, key] of [['256 characters', 'k'.repeat(256)], ['a tab', 'a\tb'], ['DEL', 'a\u007fb']] as const) {
        const res = await patch({ userId: user, amount: -1 }, key)
        t.equal(res.statusCode, 400, name)
        t.equal(res.json().code, 'FST_ERR_VALIDATION', name)
        t.match(res.json().message, /idempotency-key/, name)
      }
      t.same(await snapshot(app), before, 'nothing changed')
      const longest = await patch({ userId: user, amount: -1 }, `${'k'.repeat(250)} ~!@#`)
      t.equal(longest.statusCode, 200, '255 printable characters, spaces and symbols included')
    })

    t.test('100 concurrent requests with one key: exactly one change, 100 identical answers', async (t) => {
      const user = await newUser(app, 1000)
      const results = await Promise.all(Array.from({ length: 100 }, async () => await patch({ userId: user, amount: -3 }, 'burst-1')))
      t.same([...new Set(results.map((res) => res.statusCode))], [200])
      t.equal(new Set(results.map((res) => res.body)).size, 1, 'one body')
      t.equal(results.filter((res) => res.headers['idempotent-replayed'] === 'true').length, 99, 'one executed, 99 replayed')
      t.equal(await balanceOf(app, user), 997, 'changed once')
      t.match(await journal(app, user), [{ kind: 'opening' }, { amount: -3, idempotencyKey: 'burst-1' }])
      t.equal((await journal(app, user)).length, 2)
    })

    t.test('concurrent requests with one key and two bodies: one runs, its twins replay, the others get 422', async (t) => {
      const user = await newUser(app, 1000)
      const results = await Promise.all(Array.from({ length: 20 }, async (_, i) => await patch({ userId: user, amount: i % 2 === 0 ? -1 : -2 }, 'burst-2')))
      const winner = (await journal(app, user))[1]?.amount
      t.ok(winner === -1 || winner === -2, 'one of the two ran')
      for (const [i, res] of results.entries()) {
        const mine = i % 2 === 0 ? -1 : -2
        t.equal(res.statusCode, mine === winner ? 200 : 422)
      }
      t.equal((await journal(app, user)).length, 2, 'exactly one change')
    })

    t.test('transfers: replay, 409 kept, concurrent duplicates execute once', async (t) => {
      const a = await newUser(app, 100)
      const b = await newUser(app, 0)
      const body = { fromUserId: a, toUserId: b, amount: 40 }
      const results = await Promise.all(Array.from({ length: 30 }, async () => await request(app, 'POST', '/api/transfers', body, 'move-1')))
      t.same([...new Set(results.map((res) => res.statusCode))], [201])
      t.equal(new Set(results.map((res) => res.body)).size, 1)
      t.equal(results.filter((res) => res.headers['idempotent-replayed'] === 'true').length, 29)
      t.equal(await balanceOf(app, a), 60)
      t.equal(await balanceOf(app, b), 40)
      const legs = await sql<{ idempotency_key: string }>(app, 'SELECT idempotency_key FROM journal_entries WHERE transfer_id = $1', [results[0]?.json().transferId])
      t.same(legs.map((leg) => leg.idempotency_key), ['move-1', 'move-1'], 'both legs carry the key')
      const refused = await request(app, 'POST', '/api/transfers', { ...body, amount: 61 }, 'move-2')
      t.equal(refused.statusCode, 409)
      await request(app, 'PATCH', '/api/balance', { userId: a, amount: 1000 })
      const replayed = await request(app, 'POST', '/api/transfers', { ...body, amount: 61 }, 'move-2')
      t.equal(replayed.statusCode, 409)
      t.equal(replayed.headers['idempotent-replayed'], 'true')
      t.equal(replayed.body, refused.body)
      const unknown = await request(app, 'POST', '/api/transfers', { ...body, toUserId: 999999 }, 'move-3')
      const unknownAgain = await request(app, 'POST', '/api/transfers', { ...body, toUserId: 999999 }, 'move-3')
      t.equal(unknownAgain.statusCode, 404)
      t.equal(unknownAgain.headers['idempotent-replayed'], 'true')
      t.equal(unknownAgain.body, unknown.body)
    })

    t.test('an expired key is forgotten: the same key runs as new', async (t) => {
      const user = await newUser(app, 100)
      t.equal((await patch({ userId: user, amount: -1 }, 'old-key')).statusCode, 200)
      await sql(app, "UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = 'old-key'")
      const fresh = await patch({ userId: user, amount: -2 }, 'old-key')
      t.equal(fresh.statusCode, 200, 'not a 422: the old use expired')
      t.notOk(fresh.headers['idempotent-replayed'])
      t.equal(await balanceOf(app, user), 97)
      const replay = await patch({ userId: user, amount: -2 }, 'old-key')
      t.equal(replay.headers['idempotent-replayed'], 'true', 'the new use is kept')
    })

    t.test(`expired keys are purged on keyed writes, at most ${IDEMPOTENCY_PURGE_LIMIT} at a time`, async (t) => {
      await sql(app, `
        INSERT INTO idempotency_keys (key, request_fingerprint, result, created_at, expires_at)
        SELECT 'expired-' || g, 'x', '{"operation": "change", "outcome": "user_not_found"}', now() - interval '2 days', now() - interval '1 day'
        FROM generate_series(1, 150) g`)
      const expired = async (): Promise<number> => Number((await sql<{ n: string }>(app, "SELECT count(*) AS n FROM idempotency_keys WHERE key LIKE 'expired-%'"))[0]?.n)
      const user = await newUser(app, 100)
      t.equal((await patch({ userId: user, amount: -1 })).statusCode, 200)
      t.equal(await expired(), 150, 'a keyless write costs nothing extra: no purge')
      t.equal((await patch({ userId: user, amount: -1 }, 'purge-1')).statusCode, 200)
      t.equal(await expired(), 50, 'one keyed write purged 100')
      t.equal((await patch({ userId: user, amount: -1 }, 'purge-2')).statusCode, 200)
      t.equal(await expired(), 0)
      const [live] = await sql<{ n: string }>(app, "SELECT count(*) AS n FROM idempotency_keys WHERE key IN ('purge-1', 'purge-2')")
      t.equal(Number(live?.n), 2, 'live keys stay')
    })

    t.test('books balance', async (t) => { await assertBooksBalance(t, app) })
  })
}

t.test('IDEMPOTENCY_TTL_HOURS sets how long keys live', async (t) => {
  const { app } = await build(t, { env: { IDEMPOTENCY_TTL_HOURS: '2' } })
  t.equal((await request(app, 'PATCH', '/api/balance', { userId: 1, amount: -1 }, 'ttl-1')).statusCode, 200)
  const [row] = await sql<{ ttl: string }>(app, "SELECT extract(epoch FROM expires_at - created_at) AS ttl FROM idempotency_keys WHERE key = 'ttl-1'")
  t.equal(Number(row?.ttl), 2 * 3600)
})
