import t from 'tap'
import { build, sql, strategies } from '../helper.js'
import { MAX, assertBooksBalance, balanceOf, journal, newUser, request, snapshot } from '../support/ledger.js'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

for (const strategy of strategies) {
  t.test(`POST /api/transfers (${strategy})`, async (t) => {
    const { app } = await build(t, { strategy })
    const transfer = async (payload: unknown, key?: string) => await request(app, 'POST', '/api/transfers', payload, key)

    t.test('201: both balances and both journal legs, one transfer id', async (t) => {
      const alice = await newUser(app, 1000)
      const bob = await newUser(app, 50)
      const res = await transfer({ fromUserId: alice, toUserId: bob, amount: 300 })
      t.equal(res.statusCode, 201)
      const body = res.json()
      t.match(body.transferId, UUID)
      t.same(body, { transferId: body.transferId, from: { userId: alice, balance: 700 }, to: { userId: bob, balance: 350 } })
      t.match(await journal(app, alice), [
        { kind: 'opening', amount: 1000 },
        { kind: 'transfer-out', amount: -300, balanceAfter: 700, transferId: body.transferId, idempotencyKey: null },
      ])
      t.match(await journal(app, bob), [
        { kind: 'opening', amount: 50 },
        { kind: 'transfer-in', amount: 300, balanceAfter: 350, transferId: body.transferId, idempotencyKey: null },
      ])
      t.equal(await balanceOf(app, alice), 700)
      t.equal(await balanceOf(app, bob), 350)
    })

    t.test('from a higher id to a lower id too, down to exactly 0', async (t) => {
      const low = await newUser(app, 0)
      const high = await newUser(app, 40)
      const res = await transfer({ fromUserId: high, toUserId: low, amount: 40 })
      t.equal(res.statusCode, 201)
      t.same(res.json().from, { userId: high, balance: 0 })
      t.same(res.json().to, { userId: low, balance: 40 })
    })

    t.test('409 INSUFFICIENT_FUNDS names the sender and its balance; nothing changes', async (t) => {
      for (const [fromFirst, label] of [[true, 'sender has the lower id'], [false, 'sender has the higher id']] as const) {
        const a = await newUser(app, 10)
        const b = await newUser(app, 5)
        const [from, to] = fromFirst ? [a, b] : [b, a]
        const fromBalance = fromFirst ? 10 : 5
        const before = await snapshot(app)
        const res = await transfer({ fromUserId: from, toUserId: to, amount: fromBalance + 1 })
        t.equal(res.statusCode, 409, label)
        t.same(res.json(), {
          statusCode: 409,
          code: 'INSUFFICIENT_FUNDS',
          error: 'Conflict',
          message: `Insufficient funds: user ${from} has ${fromBalance}, the change is ${-(fromBalance + 1)}`,
          userId: from,
          balance: fromBalance,
          available: fromBalance,
        }, label)
        t.same(await snapshot(app), before, `${label}: nothing changed, not even updated_at`)
      }
    })

    t.test('409 BALANCE_LIMIT_EXCEEDED names the receiver and its balance; nothing changes', async (t) => {
      for (const [fromFirst, label] of [[true, 'receiver has the higher id'], [false, 'receiver has the lower id']] as const) {
        const a = await newUser(app, 10)
        const b = await newUser(app, MAX - 5)
        const [from, to] = fromFirst ? [a, b] : [b, a]
        // Make the receiver the full one whichever id it has.
        if (!fromFirst) {
          await request(app, 'PATCH', '/api/balance', { userId: a, amount: MAX - 15 })
          await request(app, 'PATCH', '/api/balance', { userId: b, amount: -(MAX - 15) })
        }
        const receiverBalance = await balanceOf(app, to)
        t.equal(receiverBalance, MAX - 5, `${label}: receiver is 5 below the maximum`)
        const before = await snapshot(app)
        const res = await transfer({ fromUserId: from, toUserId: to, amount: 6 })
        t.equal(res.statusCode, 409, label)
        t.same(res.json(), {
          statusCode: 409,
          code: 'BALANCE_LIMIT_EXCEEDED',
          error: 'Conflict',
          message: `Balance limit exceeded: user ${to} has ${receiverBalance}, adding 6 would pass ${MAX}`,
          userId: to,
          balance: receiverBalance,
        }, label)
        t.same(await snapshot(app), before, `${label}: nothing changed`)
        const exact = await transfer({ fromUserId: from, toUserId: to, amount: 5 })
        t.equal(exact.statusCode, 201, `${label}: up to the maximum exactly`)
        t.equal(exact.json().to.balance, MAX)
      }
    })

    t.test('404 USER_NOT_FOUND for an unknown sender or receiver (the sender is named first)', async (t) => {
      const known = await newUser(app, 100)
      const before = await snapshot(app)
      const cases: Array<[number, number, number]> = [[987654, known, 987654], [known, 987655, 987655], [987656, 987657, 987656], [1, 987658, 987658]]
      for (const [from, to, missing] of cases) {
        const res = await transfer({ fromUserId: from, toUserId: to, amount: 1 })
        t.equal(res.statusCode, 404, `${from} → ${to}`)
        t.same(res.json(), { statusCode: 404, code: 'USER_NOT_FOUND', error: 'Not Found', message: `User ${missing} does not exist` })
      }
      t.same(await snapshot(app), before, 'nothing changed')
    })

    t.test('400 for the same user twice and for bad bodies; nothing changes', async (t) => {
      const before = await snapshot(app)
      const same = await transfer({ fromUserId: 1, toUserId: 1, amount: 1 })
      t.equal(same.statusCode, 400)
      t.same(same.json(), {
        statusCode: 400,
        code: 'SAME_USER_TRANSFER',
        error: 'Bad Request',
        message: 'A transfer needs two different users; both sides are user 1',
      })
      const cases: Array<[string, unknown]> = [
        ['zero amount', { fromUserId: 1, toUserId: 2, amount: 0 }],
        ['negative amount', { fromUserId: 1, toUserId: 2, amount: -5 }],
        ['fractional amount', { fromUserId: 1, toUserId: 2, amount: 1.5 }],
        ['amount as a string', { fromUserId: 1, toUserId: 2, amount: '5' }],
        ['amount above 2^53 - 1', { fromUserId: 1, toUserId: 2, amount: MAX + 1 }],
        ['missing toUserId', { fromUserId: 1, amount: 5 }],
        ['user id 0', { fromUserId: 0, toUserId: 2, amount: 5 }],
        ['unknown property', { fromUserId: 1, toUserId: 2, amount: 5, note: 'x' }],
      ]
      for (const [name, payload] of cases) {
        const res = await transfer(payload)
        t.equal(res.statusCode, 400, name)
        t.equal(res.json().code, 'FST_ERR_VALIDATION', name)
      }
      t.same(await snapshot(app), before, 'nothing changed')
    })

    t.test('200 concurrent transfers in both directions: no deadlock, every one applied, total conserved', async (t) => {
      const a = await newUser(app, 10_000)
      const b = await newUser(app, 10_000)
      const requests = Array.from({ length: 200 }, (_, i) => i % 2 === 0
        ? transfer({ fromUserId: a, toUserId: b, amount: 7 + (i % 5) })
        : transfer({ fromUserId: b, toUserId: a, amount: 7 + (i % 5) }))
      const results = await Promise.all(requests)
      const statuses: Record<number, number> = {}
      for (const res of results) statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1
      t.same(statuses, { 201: 200 }, 'all 200 applied: no deadlock error, no 5xx')
      // Each direction moved the same amounts (i % 5 cycles identically over even and odd i).
      t.equal(await balanceOf(app, a), 10_000)
      t.equal(await balanceOf(app, b), 10_000)
      t.equal((await journal(app, a)).length, 201)
      t.equal((await journal(app, b)).length, 201)
      const [legs] = await sql<{ transfers: string, unpaired: string }>(app, `
        SELECT count(DISTINCT transfer_id) AS transfers,
               count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM journal_entries o WHERE o.transfer_id = j.transfer_id AND o.id <> j.id)) AS unpaired
        FROM journal_entries j WHERE transfer_id IS NOT NULL AND user_id IN ($1, $2)`, [a, b])
      t.equal(Number(legs?.transfers), 200)
      t.equal(Number(legs?.unpaired), 0)
    })

    t.test('concurrent transfers draining one sender: exactly the affordable ones apply', async (t) => {
      const from = await newUser(app, 100)
      const to = await newUser(app, 0)
      const results = await Promise.all(Array.from({ length: 30 }, async () => await transfer({ fromUserId: from, toUserId: to, amount: 7 })))
      const ok = results.filter((res) => res.statusCode === 201).length
      const refused = results.filter((res) => res.statusCode === 409 && res.json().code === 'INSUFFICIENT_FUNDS').length
      t.equal(ok, 14, '14 × 7 = 98 ≤ 100')
      t.equal(refused, 16)
      t.equal(await balanceOf(app, from), 2)
      t.equal(await balanceOf(app, to), 98)
    })

    t.test('books balance', async (t) => { await assertBooksBalance(t, app) })
  })
}
