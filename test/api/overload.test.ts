import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import t, { type Test } from 'tap'
import { build } from '../helper.js'
import { holdLock } from '../support/locks.js'
import { assertBooksBalance, balanceOf, journal, newUser, request } from '../support/ledger.js'

/**
 * Every queue in front of the database is bounded and every waiter has a deadline: past them a request is refused
 * at once with 503 OVERLOADED and Retry-After, and nothing of it is applied.
 */


const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

/** A request with the time it took to answer. */
async function timed (app: FastifyInstance, method: 'GET' | 'PATCH', url: string, payload?: unknown): Promise<{ reply: LightMyRequestResponse, ms: number }> {
  const started = performance.now()
  const reply = await request(app, method, url, payload)
  return { reply, ms: performance.now() - started }
}

function assertOverloaded (t: Test, reply: LightMyRequestResponse, what: string): void {
  t.equal(reply.statusCode, 503, `${what}: 503`)
  t.equal(reply.headers['retry-after'], '1', `${what}: Retry-After: 1`)
  t.match(reply.json(), { statusCode: 503, code: 'OVERLOADED', error: 'Service Unavailable' }, `${what}: code OVERLOADED`)
}

async function changeCount (app: FastifyInstance, userId: number): Promise<number> {
  return (await journal(app, userId)).filter((entry) => entry.kind === 'change').length
}

t.test('a user\'s group-commit lane is bounded: past it, an immediate 503 OVERLOADED that applies nothing', async (t) => {
  const { app, db } = await build(t, { env: { GROUP_COMMIT_MAX_WAITING_PER_USER: '5' } })
  const userId = await newUser(app, 0)
  const release = await holdLock(t, db.url, userId)
  // +1 goes alone and blocks on the lock; 5 wait in the lane; the 14 after them are refused.
  const first = request(app, 'PATCH', '/api/balance', { userId, amount: 1 })
  await sleep(100)
  const rest = Array.from({ length: 19 }, async () => await timed(app, 'PATCH', '/api/balance', { userId, amount: 1 }))
  await sleep(300)
  const refused = []
  for (const pending of rest.slice(5)) refused.push(await pending)
  for (const { reply, ms } of refused) {
    assertOverloaded(t, reply, 'past the lane cap')
    t.ok(ms < 300, `refused while the lock is still held (${Math.round(ms)} ms)`)
  }
  await release()
  t.equal((await first).statusCode, 200)
  const admitted = await Promise.all(rest.slice(0, 5))
  t.same(admitted.map(({ reply }) => reply.statusCode), [200, 200, 200, 200, 200], 'the five in the lane applied')
  t.equal(await changeCount(app, userId), 6, 'exactly 6 journal entries: none for the refused')
  t.equal(await balanceOf(app, userId), 6)
  const metrics = (await app.inject('/metrics')).body
  t.match(metrics, /balance_changes_failed_total\{strategy="advisory",reason="overloaded"\} 14\n/, 'the 14 shed are counted as overloaded, not as bugs')
  t.notMatch(metrics, /reason="error"/, 'no change counted as an error')
  await assertBooksBalance(t, app)
})

t.test('the group-commit lanes together are bounded', async (t) => {
  const { app, db } = await build(t, { env: { GROUP_COMMIT_MAX_WAITING: '3' } })
  const users = [await newUser(app, 0), await newUser(app, 0)]
  const releases = [await holdLock(t, db.url, users[0]!), await holdLock(t, db.url, users[1]!)]
  const heads = users.map(async (userId) => await request(app, 'PATCH', '/api/balance', { userId, amount: 1 }))
  await sleep(100)
  const waiting = [users[0], users[1], users[0]].map(async (userId) => await request(app, 'PATCH', '/api/balance', { userId, amount: 1 }))
  await sleep(100)
  assertOverloaded(t, await request(app, 'PATCH', '/api/balance', { userId: users[1], amount: 1 }), 'a fourth waiter over all lanes')
  for (const release of releases) await release()
  t.same([...await Promise.all(heads), ...await Promise.all(waiting)].map((reply) => reply.statusCode), [200, 200, 200, 200, 200])
  t.same([await balanceOf(app, users[0]!), await balanceOf(app, users[1]!)], [3, 2], 'the refused change was not applied')
  await assertBooksBalance(t, app)
})

t.test('a change that waits past its deadline is refused with OVERLOADED and never applied', async (t) => {
  const { app, db } = await build(t, { env: { GROUP_COMMIT_WAIT_TIMEOUT_MS: '300' } })
  const userId = await newUser(app, 0)
  const release = await holdLock(t, db.url, userId)
  const first = request(app, 'PATCH', '/api/balance', { userId, amount: 1 })
  await sleep(100)
  const late = await Promise.all(Array.from({ length: 4 }, async () => await timed(app, 'PATCH', '/api/balance', { userId, amount: 10 })))
  for (const { reply, ms } of late) {
    assertOverloaded(t, reply, 'past the deadline')
    t.ok(ms >= 290 && ms < 1500, `refused at its deadline (${Math.round(ms)} ms), the lock still held`)
  }
  await release()
  t.equal((await first).statusCode, 200, 'the change already sent is not shed')
  t.equal(await balanceOf(app, userId), 1, 'none of the four was applied')
  t.equal(await changeCount(app, userId), 1)
  const after = await request(app, 'PATCH', '/api/balance', { userId, amount: 5 })
  t.match(after.json(), { balance: 6 }, 'the lane works again afterwards')
  await assertBooksBalance(t, app)
})

t.test('each waiting change has its own deadline: a later one is refused at its own, not at its lane\'s first', async (t) => {
  const { app, db } = await build(t, { env: { GROUP_COMMIT_WAIT_TIMEOUT_MS: '400' } })
  const userId = await newUser(app, 0)
  const release = await holdLock(t, db.url, userId)
  const first = request(app, 'PATCH', '/api/balance', { userId, amount: 1 })
  await sleep(100)
  const started = performance.now()
  const early = timed(app, 'PATCH', '/api/balance', { userId, amount: 10 })
  await sleep(250)
  const late = timed(app, 'PATCH', '/api/balance', { userId, amount: 100 })
  const earlyAnswer = await early
  assertOverloaded(t, earlyAnswer.reply, 'the early one past its deadline')
  t.ok(earlyAnswer.ms >= 390 && earlyAnswer.ms < 1200, `the early one refused at its deadline (${Math.round(earlyAnswer.ms)} ms)`)
  const lateAnswer = await late
  assertOverloaded(t, lateAnswer.reply, 'the late one past its own deadline')
  t.ok(lateAnswer.ms >= 390 && lateAnswer.ms < 1200, `the late one waited its own 400 ms (${Math.round(lateAnswer.ms)} ms)`)
  t.ok(performance.now() - started >= 640, 'the late one was refused after the early one\'s deadline, not with it')
  await release()
  t.equal((await first).statusCode, 200)
  t.equal(await balanceOf(app, userId), 1, 'neither waiting change was applied')
  await assertBooksBalance(t, app)
})

t.test('a change taken into a batch before its deadline is answered, whatever its lane\'s timer does next', async (t) => {
  const { app, db } = await build(t, { env: { GROUP_COMMIT_WAIT_TIMEOUT_MS: '500' } })
  const userId = await newUser(app, 0)
  const release = await holdLock(t, db.url, userId)
  const first = request(app, 'PATCH', '/api/balance', { userId, amount: 1 })
  await sleep(100)
  const taken = Array.from({ length: 3 }, async () => await request(app, 'PATCH', '/api/balance', { userId, amount: 2 }))
  await sleep(100)
  await release()
  t.equal((await first).statusCode, 200)
  t.same((await Promise.all(taken)).map((reply) => reply.statusCode), [200, 200, 200], 'the three went in the next batch')
  // The lane's timer was set for the first waiter; it must shed nothing that is not waiting any more.
  await sleep(600)
  const after = await request(app, 'PATCH', '/api/balance', { userId, amount: 5 })
  t.match(after.json(), { balance: 12 })
  t.equal(await changeCount(app, userId), 5)
  await assertBooksBalance(t, app)
})

t.test('the pool\'s wait queue is bounded: a write past it is refused before anything is sent', async (t) => {
  const { app, db } = await build(t, { env: { GROUP_COMMIT: 'off', DB_POOL_MAX: '2', DB_POOL_MAX_WAITING: '1' } })
  const userId = await newUser(app, 0)
  const release = await holdLock(t, db.url, userId)
  // Two changes hold both connections (blocked on the lock); a third waits for a connection; the rest are refused.
  const holding = [1, 2].map(async () => await request(app, 'PATCH', '/api/balance', { userId, amount: 1 }))
  await sleep(200)
  const queued = request(app, 'PATCH', '/api/balance', { userId, amount: 1 })
  await sleep(200)
  const refused = await Promise.all(Array.from({ length: 5 }, async () => await timed(app, 'PATCH', '/api/balance', { userId, amount: 1 })))
  for (const { reply, ms } of refused) {
    assertOverloaded(t, reply, 'past the pool queue')
    t.ok(ms < 300, `at once (${Math.round(ms)} ms)`)
  }
  const other = await newUser(app, 0).catch((error: Error) => error.message)
  t.match(other, /503/, 'every write is refused while the pool queue is full, user creation too')
  await release()
  t.same((await Promise.all([...holding, queued])).map((reply) => reply.statusCode), [200, 200, 200])
  t.equal(await balanceOf(app, userId), 3, 'only the three admitted changes applied')
  await assertBooksBalance(t, app)
})

t.test('a read flood cannot starve writes: reads past their gate are shed, writes finish well inside their deadline', async (t) => {
  // A pool of 3 with reads capped at 1 leaves 2 connections to writes. The acquire deadline is short on purpose:
  // without the read gate, 6,000 reads queue in the pool in front of the writes and the writes time out there.
  const { app } = await build(t, { env: { DB_POOL_MAX: '3', DB_READ_CONCURRENCY: '1', DB_READ_MAX_WAITING: '50', DB_ACQUIRE_TIMEOUT_MS: '1000' } })
  const userId = await newUser(app, 1000)
  const reads = Array.from({ length: 6000 }, async (_, i) => await request(app, 'GET', i % 2 === 0 ? `/api/users/${userId}` : `/api/users/${userId}/transactions?limit=50`))
  await sleep(0)
  const writes = Array.from({ length: 50 }, async () => await timed(app, 'PATCH', '/api/balance', { userId, amount: -1 }))
  const written = await Promise.all(writes)
  const answered = await Promise.all(reads)
  t.same(written.map(({ reply }) => reply.statusCode), Array(50).fill(200), 'every write applied')
  const slowest = Math.max(...written.map(({ ms }) => ms))
  t.ok(slowest < 1000, `the slowest write took ${Math.round(slowest)} ms, inside the 1 s acquire deadline`)
  const statuses: Record<string, number> = {}
  for (const reply of answered) {
    const key = reply.statusCode === 503 ? `503 ${String((reply.json() as { code: string }).code)}` : String(reply.statusCode)
    statuses[key] = (statuses[key] ?? 0) + 1
  }
  t.same(Object.keys(statuses).sort(), ['200', '503 OVERLOADED'], `reads are served or shed, nothing else: ${JSON.stringify(statuses)}`)
  t.equal(await balanceOf(app, userId), 950)
  t.equal(await changeCount(app, userId), 50, 'exactly 50 change entries')
  await assertBooksBalance(t, app)
})

t.test('a read waits at most its deadline for a read slot', async (t) => {
  const { app } = await build(t, { env: { DB_POOL_MAX: '2', DB_READ_CONCURRENCY: '1', DB_READ_WAIT_TIMEOUT_MS: '1' } })
  const replies = await Promise.all(Array.from({ length: 200 }, async () => await request(app, 'GET', '/api/users/1')))
  const overloaded = replies.filter((reply) => reply.statusCode === 503)
  t.ok(overloaded.length > 0, `${overloaded.length} of 200 reads passed their 1 ms deadline`)
  for (const reply of overloaded.slice(0, 3)) assertOverloaded(t, reply, 'past the read deadline')
  t.ok(replies.every((reply) => reply.statusCode === 200 || reply.statusCode === 503), 'served or shed')
})

t.test('a flood of health checks shares one query at a time: all answered 200, none shed by the read gate', async (t) => {
  const { app } = await build(t, { env: { DB_POOL_MAX: '2', DB_READ_CONCURRENCY: '1', DB_READ_MAX_WAITING: '1' } })
  const replies = await Promise.all(Array.from({ length: 1000 }, async () => await request(app, 'GET', '/api/health')))
  t.same([...new Set(replies.map((reply) => reply.statusCode))], [200])
  t.same(replies[0]!.json(), { status: 'ok', db: 'up' })
})
