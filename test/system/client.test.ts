import http from 'node:http'
import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import pg from 'pg'
import t from 'tap'
import { checkBooks, formatReport } from '../../src/db/check-books.js'
import { freePort } from '../../src/db/embedded-postgres.js'
import {
  BalanceApiError,
  BalanceClient,
  BalanceLimitExceededError,
  BalanceNetworkError,
  DatabaseUnavailableError,
  IdempotencyKeyReusedError,
  InsufficientFundsError,
  OverloadedError,
  UnauthorizedError,
  UserNotFoundError,
  ValidationError,
  type AttemptInfo,
  type JournalEntry,
} from '../../src/client/index.js'
import { build, buildBehindProxy, listen } from '../helper.js'
import { startTcpProxy } from '../support/tcp-proxy.js'
import { rejection } from '../support/rejection.js'

/**
 * The typed client against the real service on a real PostgreSQL: every method, its typed errors, and
 * its retries. "Never retried" and "retried N times" are counted at the server, from its own request counter
 * (/metrics http_request_duration_seconds_count), not from the client's word.
 */
const TOKEN = 'client-test-token-0123456789'
const FAST = { baseDelayMs: 5, maxDelayMs: 50 }

/** Requests the service counted for one route and status. */
async function served (app: FastifyInstance, method: string, route: string, status: number): Promise<number> {
  const text = (await app.inject({ url: '/metrics', headers: { authorization: `Bearer ${TOKEN}` } })).body
  const line = text.split('\n').find((l) => l.startsWith(`http_request_duration_seconds_count{method="${method}",route="${route}",status_code="${status}"}`))
  return line === undefined ? 0 : Number(line.split(' ').pop())
}


async function journalByKey (url: string, key: string): Promise<number> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return Number((await client.query<{ n: string }>('SELECT count(*) AS n FROM journal_entries WHERE idempotency_key = $1', [key])).rows[0]?.n)
  } finally {
    await client.end()
  }
}

t.test('every method against a running service (API_TOKENS set)', async (t) => {
  const { app, db } = await build(t, { env: { API_TOKENS: TOKEN } })
  const base = await listen(app)
  const client = new BalanceClient({ baseUrl: base, token: TOKEN, retry: FAST })

  t.same(await client.health(), { status: 'ok', db: 'up' }, 'health')
  t.same(await client.live(), { status: 'ok' }, 'live')

  const created = await client.createUser({ balance: 500 }, { requestId: 'client-test-create' })
  t.match(created, { status: 201, replayed: false, attempts: 1, requestId: 'client-test-create', data: { balance: 500 } }, 'createUser: 201, the request id echoed')
  t.match(created.idempotencyKey, /^[0-9a-f-]{36}$/, 'a generated key (a UUID) comes back with the result')
  const again = await client.createUser({ balance: 500 }, { idempotencyKey: created.idempotencyKey })
  t.equal(again.replayed, true, 'the same key again: Idempotent-Replayed surfaced')
  t.equal(again.data.id, created.data.id, 'and the same user, not a second one')
  const userId = created.data.id
  const empty = await client.createUser()
  t.equal(empty.data.balance, 0, 'createUser without input: balance 0')

  const change = await client.changeBalance({ userId, amount: -50 }, { idempotencyKey: 'client-change-1' })
  t.match(change, { status: 200, replayed: false, idempotencyKey: 'client-change-1', data: { userId, balance: 450, amount: -50 } }, 'changeBalance')
  t.equal(await journalByKey(db.url, 'client-change-1'), 1, 'its journal entry carries the caller\'s key')

  const transfer = await client.transfer({ fromUserId: userId, toUserId: empty.data.id, amount: 200 })
  t.match(transfer, { status: 201, replayed: false, data: { from: { userId, balance: 250 }, to: { userId: empty.data.id, balance: 200 } } }, 'transfer')
  t.equal(await journalByKey(db.url, transfer.idempotencyKey), 2, 'both legs carry the generated key')

  const user = await client.getUser(userId, { requestId: 'client-test-get' })
  t.equal(user.balance, 250, 'getUser')
  t.match(user.createdAt, /^\d{4}-\d\d-\d\dT/, 'dates as ISO strings')

  for (let index = 0; index < 5; index += 1) await client.changeBalance({ userId, amount: 1 + index })
  const pages: number[] = []
  const entries: JournalEntry[] = []
  for await (const page of client.history(userId, { limit: 2 })) {
    pages.push(page.items.length)
    entries.push(...page.items)
  }
  t.same(pages, [2, 2, 2, 2], 'history follows nextCursor over every page (8 entries, 2 per page) and stops at null')
  t.same(entries.map((entry) => entry.kind), ['change', 'change', 'change', 'change', 'change', 'transfer-out', 'change', 'opening'], 'newest first, nothing skipped or repeated')
  t.equal(entries[0]!.balanceAfter, 250 + 15, 'the newest entry has the current balance')
  const first = await client.history(userId, { limit: 3 }).next()
  t.equal(first.value?.items.length, 3, 'history is lazy: one page when only one is asked for')
  t.equal((await client.historyPage(userId, { limit: 500 })).items.length, 8, 'historyPage: one page')

  t.test('errors are typed by code, and a 4xx is never retried (counted at the server)', async (t) => {
    const before409 = await served(app, 'PATCH', '/api/balance', 409)
    const funds = await rejection(client.changeBalance({ userId, amount: -1_000_000 }, { idempotencyKey: 'client-too-much' }))
    t.type(funds, InsufficientFundsError)
    t.match(funds, { status: 409, code: 'INSUFFICIENT_FUNDS', userId, balance: 265, idempotencyKey: 'client-too-much', attempts: 1, stoppedBy: 'answer', replayed: false })
    t.equal(await served(app, 'PATCH', '/api/balance', 409), before409 + 1, 'one request reached the service')
    const replayed = await rejection(client.changeBalance({ userId, amount: -1_000_000 }, { idempotencyKey: 'client-too-much' }))
    t.match(replayed, { code: 'INSUFFICIENT_FUNDS', replayed: true }, 'a kept 409 is replayed, and says so')

    const limit = await rejection(client.changeBalance({ userId, amount: Number.MAX_SAFE_INTEGER }))
    t.type(limit, BalanceLimitExceededError)
    t.match(limit, { status: 409, code: 'BALANCE_LIMIT_EXCEEDED', balance: 265 })

    const before404 = await served(app, 'PATCH', '/api/balance', 404)
    const missing = await rejection(client.changeBalance({ userId: 999_999, amount: 1 }))
    t.type(missing, UserNotFoundError)
    t.equal(await served(app, 'PATCH', '/api/balance', 404), before404 + 1, '404: one request')
    t.type(await rejection(client.getUser(999_999)), UserNotFoundError, 'getUser of an unknown user')

    const before422 = await served(app, 'PATCH', '/api/balance', 422)
    const reused = await rejection(client.changeBalance({ userId, amount: -51 }, { idempotencyKey: 'client-change-1' }))
    t.type(reused, IdempotencyKeyReusedError)
    t.match(reused, { status: 422, code: 'IDEMPOTENCY_KEY_REUSED', idempotencyKey: 'client-change-1' })
    t.equal(await served(app, 'PATCH', '/api/balance', 422), before422 + 1, '422: one request')

    const before400 = await served(app, 'POST', '/api/transfers', 400)
    const same = await rejection(client.transfer({ fromUserId: userId, toUserId: userId, amount: 1 }))
    t.type(same, ValidationError)
    t.match(same, { status: 400, code: 'SAME_USER_TRANSFER' })
    const invalid = await rejection(client.changeBalance({ userId, amount: 0 }))
    t.match(invalid, { status: 400, code: 'FST_ERR_VALIDATION' })
    t.type(invalid, ValidationError)
    t.equal(await served(app, 'POST', '/api/transfers', 400), before400 + 1, '400: one request')
    t.match(await rejection(client.historyPage(userId, { before: 'not-a-cursor' })), { code: 'INVALID_CURSOR', status: 400 })

    const anonymous = new BalanceClient({ baseUrl: base, retry: FAST })
    const before401 = await served(app, 'POST', '/api/users', 401)
    const unauthorized = await rejection(anonymous.createUser({ balance: 1 }))
    t.type(unauthorized, UnauthorizedError)
    t.match(unauthorized, { status: 401, code: 'UNAUTHORIZED' })
    t.equal(await served(app, 'POST', '/api/users', 401), before401 + 1, '401: one request')
    t.type(await rejection(anonymous.getUser(userId)), UnauthorizedError, 'reads need a token too')

    for (const error of [funds, limit, missing, reused, same, unauthorized]) t.type(error, BalanceApiError)
    t.equal((await client.getUser(userId)).balance, 265, 'no refusal changed anything')
  })
})

t.test('503 OVERLOADED is retried (nothing was applied) and, when the bounds run out, an OverloadedError with Retry-After', async (t) => {
  // A stand-in HTTP server that sheds every request, as the service does past its admission bounds.
  let served = 0
  const server = http.createServer((_request, response) => {
    served += 1
    response.writeHead(503, { 'content-type': 'application/json', 'retry-after': '2' })
    response.end(JSON.stringify({ statusCode: 503, code: 'OVERLOADED', error: 'Service Unavailable', message: 'The service is overloaded (queue full); nothing was applied, retry after 2 s' }))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.close() })
  const client = new BalanceClient({ baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, retry: { maxAttempts: 2, ...FAST } })
  const error = await rejection(client.changeBalance({ userId: 1, amount: -2 }))
  t.type(error, OverloadedError)
  t.match(error, { status: 503, code: 'OVERLOADED', retryAfterSeconds: 2, attempts: 2, stoppedBy: 'attempts' })
  t.type(error, BalanceApiError)
  t.equal(served, 2, 'retried once, as any 503')
})

t.test('retries stop at their bounds and say so: a base URL nobody listens on', async (t) => {
  const dead = `http://127.0.0.1:${await freePort()}`
  const attempts: AttemptInfo[] = []
  const client = new BalanceClient({ baseUrl: dead, retry: { maxAttempts: 3, ...FAST }, onAttempt: (attempt) => attempts.push(attempt) })
  const error = await rejection(client.changeBalance({ userId: 1, amount: 5 }, { idempotencyKey: 'nobody-listens' }))
  t.type(error, BalanceNetworkError)
  t.match(error, { code: 'NETWORK_ERROR', reason: 'ECONNREFUSED', attempts: 3, stoppedBy: 'attempts', idempotencyKey: 'nobody-listens' })
  t.match((error as Error).message, /gave up after 3 attempts \(the attempt limit\).*Idempotency-Key nobody-listens/, (error as Error).message)
  t.same(attempts.map((a) => [a.attempt, a.code, a.retrying, a.idempotencyKey]), [
    [1, 'ECONNREFUSED', true, 'nobody-listens'],
    [2, 'ECONNREFUSED', true, 'nobody-listens'],
    [3, 'ECONNREFUSED', false, 'nobody-listens'],
  ], 'three attempts, all with the same key')

  const timed = new BalanceClient({ baseUrl: dead, retry: { maxAttempts: 1_000_000, maxElapsedMs: 300, baseDelayMs: 20, maxDelayMs: 40 } })
  const byTime = await rejection(timed.getUser(1))
  t.match(byTime, { stoppedBy: 'time', idempotencyKey: undefined }, 'the time bound stops a client whose attempt bound is far away')
  t.ok((byTime as BalanceNetworkError).attempts < 1_000_000, `${(byTime as BalanceNetworkError).attempts} attempts`)
  t.match((byTime as Error).message, /\(the time limit\)/)

  const once = new BalanceClient({ baseUrl: dead, retry: { maxAttempts: 1 } })
  t.match(await rejection(once.health()), { attempts: 1, stoppedBy: 'attempts' }, 'maxAttempts 1: no retry')
  const aborted = await rejection(client.getUser(1, { signal: AbortSignal.abort() }))
  t.match(aborted, { stoppedBy: 'aborted', attempts: 1 }, 'the caller\'s signal ends it')
  t.throws(() => new BalanceClient({ baseUrl: [] }), RangeError)
  t.throws(() => new BalanceClient({ baseUrl: 'ftp://x' }), RangeError)
  t.throws(() => new BalanceClient({ baseUrl: dead, retry: { maxAttempts: 0 } }), RangeError)
  await t.rejects(client.changeBalance({ userId: 1, amount: 1 }, { idempotencyKey: '' }), RangeError, 'an empty key is refused before sending')
})

t.test('a timeout is retried with the same key, and bounded: a server that accepts and never answers', async (t) => {
  const requests: string[] = []
  const silent = http.createServer((request) => { requests.push(String(request.headers['idempotency-key'])) })
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    silent.closeAllConnections()
    await new Promise((resolve) => silent.close(resolve))
  })
  const address = silent.address() as { port: number }
  const attempts: AttemptInfo[] = []
  const client = new BalanceClient({ baseUrl: `http://127.0.0.1:${address.port}`, timeoutMs: 60_000, retry: { maxAttempts: 2, ...FAST }, onAttempt: (a) => attempts.push(a) })
  const error = await rejection(client.changeBalance({ userId: 1, amount: 1 }, { idempotencyKey: 'silent-1', timeoutMs: 300 }))
  t.type(error, BalanceNetworkError)
  t.match(error, { reason: 'TIMEOUT', attempts: 2, stoppedBy: 'attempts', idempotencyKey: 'silent-1' }, 'the per-request timeout (300 ms) overrides the client\'s (60 s)')
  t.same(attempts.map((a) => a.code), ['TIMEOUT', 'TIMEOUT'])
  // An attempt aborted before the server parsed it never shows up there; each one that did carried the same key.
  t.ok(requests.length >= 1 && requests.length <= 2 && requests.every((key) => key === 'silent-1'), `the server saw ${JSON.stringify(requests)}: the same key each time`)
})

t.test('several base URLs: a request that cannot connect moves to the next one with the same key', async (t) => {
  const { app, db } = await build(t)
  const live = await listen(app)
  const dead = `http://127.0.0.1:${await freePort()}`
  const attempts: AttemptInfo[] = []
  const client = new BalanceClient({ baseUrl: [dead, live], retry: FAST, onAttempt: (attempt) => attempts.push(attempt) })
  const result = await client.changeBalance({ userId: 1, amount: -2 }, { idempotencyKey: 'failover-1' })
  t.match(result, { status: 200, attempts: 2, replayed: false, data: { balance: 9998 } })
  t.same(attempts.map((a) => [a.url, a.code ?? a.status, a.idempotencyKey]), [
    [dead, 'ECONNREFUSED', 'failover-1'],
    [live, 200, 'failover-1'],
  ], 'the dead one first, then the next, same key')
  attempts.length = 0
  await client.changeBalance({ userId: 1, amount: -2 })
  t.same(attempts.map((a) => a.url), [live], 'later requests skip the one that refused (failbackAfterMs, 5 s by default)')

  const failback = new BalanceClient({ baseUrl: [dead, live], failbackAfterMs: 50, retry: FAST, onAttempt: (attempt) => attempts.push(attempt) })
  await failback.getUser(1)
  await new Promise((resolve) => setTimeout(resolve, 100))
  attempts.length = 0
  await failback.getUser(1)
  t.same(attempts.map((a) => a.url), [dead, live], 'after failbackAfterMs the first base URL is tried first again')
  t.equal(await journalByKey(db.url, 'failover-1'), 1, 'applied once')
})

t.test('a 503 is retried with the same key until the bound; DatabaseUnavailableError carries the key; asking again later learns the outcome', async (t) => {
  const { app, proxy } = await buildBehindProxy(t, 'client-503', { DB_POOL_MAX: '2', DB_CONNECT_TIMEOUT_MS: '500', DB_ACQUIRE_TIMEOUT_MS: '2000' })
  const base = await listen(app)
  const client = new BalanceClient({ baseUrl: base, retry: { maxAttempts: 3, ...FAST } })
  await proxy.cut()
  const before = await served(app, 'PATCH', '/api/balance', 503)
  const error = await rejection(client.changeBalance({ userId: 1, amount: -7 }, { idempotencyKey: 'while-down' }))
  t.type(error, DatabaseUnavailableError)
  t.match(error, { status: 503, code: 'DB_UNAVAILABLE', attempts: 3, stoppedBy: 'attempts', idempotencyKey: 'while-down' })
  t.equal(await served(app, 'PATCH', '/api/balance', 503), before + 3, 'the service saw exactly three attempts')
  const probe = await client.health()
  t.same(probe, { status: 'error', db: 'down' }, 'health reports the 503 as its answer')

  await proxy.restore()
  let later: Awaited<ReturnType<BalanceClient['changeBalance']>> | undefined
  const patient = new BalanceClient({ baseUrl: base, retry: { maxAttempts: 50, maxElapsedMs: 20_000, baseDelayMs: 20, maxDelayMs: 200 } })
  later = await patient.changeBalance({ userId: 1, amount: -7 }, { idempotencyKey: (error as DatabaseUnavailableError).idempotencyKey! })
  t.match(later, { status: 200, replayed: false, data: { balance: 9993 } }, 'the same key later: nothing had committed, so it runs now, once')
  t.equal((await patient.getUser(1)).balance, 9993)
})

t.test('replies lost after the commit (a proxy in front of the service drops them): each call ends with its real outcome, once', async (t) => {
  const { app, db } = await build(t)
  const base = new URL(await listen(app))
  const proxy = await startTcpProxy(base.hostname, Number(base.port))
  t.teardown(proxy.close)
  const attempts: AttemptInfo[] = []
  const client = new BalanceClient({
    baseUrl: `http://127.0.0.1:${proxy.port}`,
    retry: { maxAttempts: 10, maxElapsedMs: 30_000, baseDelayMs: 10, maxDelayMs: 100 },
    onAttempt: (attempt) => attempts.push(attempt),
  })
  await client.createUser({ balance: 0 }, { idempotencyKey: 'lost-user-2' })

  // 30 writes at once; the first 12 replies the service sends are lost on their way back, after their commits.
  proxy.swallowNext(12)
  const operations = Array.from({ length: 30 }, (_, index) => ({ key: `lost-http-${index}`, transfer: index % 3 === 0, amount: 10 + index }))
  const results = await Promise.allSettled(operations.map(async (operation) => operation.transfer
    ? await client.transfer({ fromUserId: 1, toUserId: 2, amount: operation.amount }, { idempotencyKey: operation.key })
    : await client.changeBalance({ userId: 1, amount: -operation.amount }, { idempotencyKey: operation.key })))
  t.equal(proxy.swallowed(), 12, '12 replies lost')
  t.same(results.filter((r) => r.status === 'rejected'), [], 'every call ends with its real answer')
  const fulfilled = results.map((r) => r.status === 'fulfilled' ? r.value : undefined)
  const retried = attempts.filter((a) => a.retrying)
  t.equal(retried.length, 12, 'each lost reply was followed by a retry with the same key')
  t.same(retried.filter((a) => a.code !== 'UND_ERR_SOCKET' && a.code !== 'ECONNRESET'), [], 'each a lost connection (undici: other side closed, or reset)')
  const lost = new Set(retried.map((a) => a.idempotencyKey))
  const replayed = fulfilled.filter((r) => r?.replayed === true).map((r) => r!.idempotencyKey)
  t.same(new Set(replayed), lost, 'exactly those got their committed answer replayed (Idempotent-Replayed)')

  const admin = new pg.Client({ connectionString: db.url })
  await admin.connect()
  t.teardown(async () => { await admin.end() })
  const rows = (await admin.query<{ idempotency_key: string, n: string }>(`SELECT idempotency_key, count(*) AS n FROM journal_entries
    WHERE idempotency_key LIKE 'lost-http-%' GROUP BY idempotency_key`)).rows
  const byKey = new Map(rows.map((row) => [row.idempotency_key, Number(row.n)]))
  t.same(operations.filter((o) => byKey.get(o.key) !== (o.transfer ? 2 : 1)).map((o) => o.key), [], 'the journal holds each change exactly once (twice for a transfer: its two legs)')
  const spent = operations.reduce((sum, o) => sum + o.amount, 0)
  t.equal((await client.getUser(1)).balance, 10_000 - spent, 'user 1 paid each amount once')
  const report = await checkBooks(app.sequelize)
  t.ok(report.ok, formatReport(report))
})
