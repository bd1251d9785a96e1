import pg from 'pg'
import t from 'tap'
import { checkBooks, formatReport } from '../src/db/check-books.js'
import { createThrowawayDatabase } from '../db/throwaway-database.js'
import { build, buildBehindProxy, checkBooksAfterFaults, listen, strategies } from './helper.js'
import { BalanceApiError, BalanceClient, BalanceClientError, BalanceNetworkError, type ChangeBalanceInput, type TransferInput } from '../src/client/index.js'
import { send, sleep } from './support/load.js'

/**
 * Clients that retry with an Idempotency-Key converge to exactly-once (issue 6, part 2): while the service's
 * PostgreSQL connections are killed over and over, each logical operation is retried with its key until it gets a
 * real answer; afterwards each one appears in the journal exactly as often as its final answer says (once per leg
 * for a 2xx, never for a 409), however many 503s came before. And the ambiguous case made on purpose: the reply to
 * a committed change is lost on its way back; the service says 503, the retry with the same key finds the result.
 */
const CLIENT_TIMEOUT_MS = 30_000
const MAX_ATTEMPTS = 40

interface Operation {
  key: string
  method: 'PATCH' | 'POST'
  path: string
  body: Record<string, number>
  /** Journal entries the operation writes when it succeeds. */
  legs: number
}

/** `final`: the status of the answer the client ended with, or its network failure code. */
interface Settled { operation: Operation, final: number | string, attempts: number, ambiguous: number, replayedAfter503: boolean }

async function connect (url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, application_name: 'fault-injector' })
  await client.connect()
  return client
}

/**
 * Sends an operation with the client (the project's one retry logic: the same Idempotency-Key on every attempt,
 * a 503 or a lost connection retried with backoff, a 4xx never) until it gets a real answer, at most MAX_ATTEMPTS
 * attempts. The client's onAttempt shows each attempt, so the 503s before the answer are counted here.
 */
function retryingClient (base: string): { untilAnswered: (operation: Operation) => Promise<Settled> } {
  const ambiguousByKey = new Map<string, number>()
  const client = new BalanceClient({
    baseUrl: base,
    timeoutMs: CLIENT_TIMEOUT_MS,
    retry: { maxAttempts: MAX_ATTEMPTS, maxElapsedMs: 120_000, baseDelayMs: 20, maxDelayMs: 500 },
    onAttempt: (attempt) => {
      if (attempt.retrying) ambiguousByKey.set(attempt.idempotencyKey!, (ambiguousByKey.get(attempt.idempotencyKey!) ?? 0) + 1)
    },
  })
  return {
    untilAnswered: async (operation) => {
      const options = { idempotencyKey: operation.key }
      let final: number | string
      let attempts: number
      let replayed = false
      try {
        const result = operation.method === 'PATCH'
          ? await client.changeBalance(operation.body as ChangeBalanceInput, options)
          : await client.transfer(operation.body as TransferInput, options)
        final = result.status
        attempts = result.attempts
        replayed = result.replayed
      } catch (error) {
        if (!(error instanceof BalanceClientError)) throw error
        final = error instanceof BalanceApiError ? error.status : (error as BalanceNetworkError).reason
        attempts = error.attempts
      }
      const ambiguous = ambiguousByKey.get(operation.key) ?? 0
      return { operation, final, attempts, ambiguous, replayedAfter503: ambiguous > 0 && replayed }
    },
  }
}

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

    let done = false
    let terminated = 0
    const killer = (async () => {
      for (let round = 0; round < 40 && !done; round += 1) {
        await sleep(60)
        const killed = await admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = current_database() AND application_name = 'balance-api' AND pid <> pg_backend_pid()`)
        terminated += killed.rowCount ?? 0
      }
    })()
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
    done = true
    await killer

    const finals = settled.map(({ final }) => final)
    const byStatus: Record<string, number> = {}
    for (const status of finals) byStatus[status] = (byStatus[status] ?? 0) + 1
    const retried = settled.filter(({ ambiguous }) => ambiguous > 0).length
    const foundCommitted = settled.filter(({ replayedAfter503 }) => replayedAfter503).length
    t.ok(terminated > 0, `${terminated} backends terminated; ${retried} operations saw a 503 first, ${foundCommitted} of them had in fact committed (replayed on retry); final answers ${JSON.stringify(byStatus)}`)
    t.ok(finals.every((status) => status === 200 || status === 201 || status === 409), 'every operation ends with a real answer: 2xx or 409')

    const rows = (await admin.query<{ idempotency_key: string, n: string }>(`SELECT idempotency_key, count(*) AS n FROM journal_entries
      WHERE idempotency_key IS NOT NULL GROUP BY idempotency_key`)).rows
    const entriesByKey = new Map(rows.map((row) => [row.idempotency_key, Number(row.n)]))
    const wrong = settled.filter(({ operation, final }) => {
      const expected = typeof final === 'number' && final < 300 ? operation.legs : 0
      return (entriesByKey.get(operation.key) ?? 0) !== expected
    }).map(({ operation, final }) => `${operation.key}: ${entriesByKey.get(operation.key) ?? 0} entries after ${final}`)
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
