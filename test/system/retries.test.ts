import t from 'tap'
import { checkBooks, formatReport } from '../../src/db/check-books.js'
import { createThrowawayDatabase } from '../../src/tooling/throwaway-database.js'
import { build, buildBehindProxy, checkBooksAfterFaults, listen, strategies } from '../helper.js'
import { send } from '../support/load.js'
import { BalanceClient, type ChangeBalanceInput, type TransferInput } from '../../src/client/index.js'
import { CLIENT_TIMEOUT_MS, backendKiller, connect, exactlyOnceMismatches, retryingClient, type Operation, type Settled } from '../support/retry.js'

/**
 * Clients that retry with an Idempotency-Key converge to exactly-once: while the service's
 * PostgreSQL connections are killed over and over, each logical operation is retried with its key until it gets a
 * real answer; afterwards each one appears in the journal exactly as often as its final answer says (once per leg
 * for a 2xx, never for a 409), however many 503s came before. And the ambiguous case made on purpose: the reply to
 * a committed change is lost on its way back; the service says 503, the retry with the same key finds the result.
 */
const keeper = await createThrowawayDatabase('retries-keeper')
t.teardown(keeper.drop)

for (const strategy of strategies) {
  t.test(`${strategy}: retries with an Idempotency-Key under pg_terminate_backend converge to exactly once`, async (t) => {
    const { app, db } = await build(t, { strategy, env: { DB_CONNECT_TIMEOUT_MS: '2000', DB_ACQUIRE_TIMEOUT_MS: '5000' } })
    const base = await listen(app)
    for (const balance of [1000, 1000, 1000]) await app.inject({ method: 'POST', url: '/api/users', payload: { balance } })
    const admin = await connect(db.url)
    t.teardown(async () => { await admin.end() })

    // 180 logical operations over users 1..4: deposits, withdrawals (some refused), transfers both ways.
    const operations = Array.from({ length: 180 }, (_, index): Operation => {
      const key = `${strategy}-op-${index}`
      const user = (index % 4) + 1
      const other = ((index + 1 + (index % 3)) % 4) + 1
      switch (index % 3) {
        case 0: return { key, method: 'PATCH', path: '/api/balance', body: { userId: user, amount: 7 + (index % 11) }, legs: 1 }
        case 1: return { key, method: 'PATCH', path: '/api/balance', body: { userId: user, amount: -(5 + (index % 400)) }, legs: 1 }
        default: return { key, method: 'POST', path: '/api/transfers', body: { fromUserId: user, toUserId: other === user ? (user % 4) + 1 : other, amount: 1 + (index % 300) }, legs: 2 }
      }
    })

    const killer = backendKiller(admin, 60, 40)
    const settled: Settled[] = []
    const { untilAnswered } = retryingClient(base)
    let next = 0
    await Promise.all(Array.from({ length: 12 }, async () => {
      while (next < operations.length) {
        const operation = operations[next]!
        next += 1
        settled.push(await untilAnswered(operation))
      }
    }))
    const terminated = await killer.stop()

    const finals = settled.map(({ final }) => final)
    const byStatus: Record<string, number> = {}
    for (const status of finals) byStatus[status] = (byStatus[status] ?? 0) + 1
    const retried = settled.filter(({ ambiguous }) => ambiguous > 0).length
    const foundCommitted = settled.filter(({ replayedAfter503 }) => replayedAfter503).length
    t.ok(terminated > 0, `${terminated} backends terminated; ${retried} operations saw a 503 first, ${foundCommitted} of them had in fact committed (replayed on retry); final answers ${JSON.stringify(byStatus)}`)
    t.ok(finals.every((status) => status === 200 || status === 201 || status === 409), 'every operation ends with a real answer: 2xx or 409')

    const wrong = await exactlyOnceMismatches(admin, settled)
    t.same(wrong, [], 'each logical operation is in the journal exactly as its final answer says: once per leg for a 2xx, never for a 409')
    const report = await checkBooksAfterFaults(app.sequelize)
    t.ok(report.ok, formatReport(report))
  })
}

t.test('the reply to a committed change is lost: 503, and the retry with the same key finds the committed result', async (t) => {
  const { app, db, proxy } = await buildBehindProxy(t, 'lost-reply', { DB_POOL_MAX: '2', DB_CONNECT_TIMEOUT_MS: '1000' })
  const base = await listen(app)
  const admin = await connect(db.url)
  t.teardown(async () => { await admin.end() })

  for (const [key, method, path, body, legs] of [
    ['lost-change', 'PATCH', '/api/balance', { userId: 1, amount: -250 }, 1],
    ['lost-transfer', 'POST', '/api/transfers', { fromUserId: 1, toUserId: 2, amount: 100 }, 2],
  ] as const) {
    if (key === 'lost-transfer') t.equal((await send(base, 'POST', '/api/users', { balance: 0 })).ok, true, 'user 2')
    // A warm pooled connection, so the request's statement reaches PostgreSQL before its reply is lost.
    t.match(await send(base, 'GET', '/api/users/1'), { ok: true, reply: { status: 200 } })
    proxy.swallowReplies(true)
    const lost = await send(base, method, path, body, { 'idempotency-key': key }, CLIENT_TIMEOUT_MS)
    proxy.swallowReplies(false)
    t.match(lost, { ok: true, reply: { status: 503, body: { code: 'DB_UNAVAILABLE' } } }, `${key}: the service cannot know the outcome: 503`)
    const committed = (await admin.query<{ n: string }>('SELECT count(*) AS n FROM journal_entries WHERE idempotency_key = $1', [key])).rows[0]
    t.equal(Number(committed?.n), legs, `${key}: yet it committed (${legs} journal entries carry the key)`)

    // The client asks again with the same key (retrying while the pool reconnects) and learns the committed result.
    const client = new BalanceClient({ baseUrl: base, timeoutMs: CLIENT_TIMEOUT_MS, retry: { maxAttempts: 20, baseDelayMs: 50, maxDelayMs: 200 } })
    const retry = method === 'PATCH'
      ? await client.changeBalance(body as ChangeBalanceInput, { idempotencyKey: key })
      : await client.transfer(body as TransferInput, { idempotencyKey: key })
    t.equal(retry.status, method === 'PATCH' ? 200 : 201, `${key}: the retry gets the real answer`)
    t.equal(retry.replayed, true, `${key}: replayed from the committed result`)
    const after = (await admin.query<{ n: string }>('SELECT count(*) AS n FROM journal_entries WHERE idempotency_key = $1', [key])).rows[0]
    t.equal(Number(after?.n), legs, `${key}: still exactly once in the journal`)
  }
  t.ok(proxy.swallowed() >= 2, `${proxy.swallowed()} replies lost on purpose`)
  const report = await checkBooks(app.sequelize)
  t.ok(report.ok, formatReport(report))
  const balance = (await admin.query<{ balance: string }>('SELECT balance FROM users WHERE id = 1')).rows[0]
  t.equal(Number(balance?.balance), 10000 - 250 - 100, 'each lost-reply operation applied once')
})
