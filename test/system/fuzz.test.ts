import { mkdir, writeFile } from 'node:fs/promises'
import fc from 'fast-check'
import pg from 'pg'
import t from 'tap'
import { checkBooks, formatReport } from '../../src/db/check-books.js'
import { build, listen } from '../helper.js'
import { assemble, bodyText, contentType, extraHeaders, fuzzRuns, fuzzSeed, idempotencyKey, idSegment, methodFor, pathFor, type FuzzRequest } from '../support/fuzz.js'
import { rawRequest, type RawResponse } from '../support/raw-http.js'

/**
 * Fuzzing every route over real sockets against a live service on real PostgreSQL.
 * For each generated request: an answer within a bounded time, never a 5xx, every refusal a 4xx whose body has a
 * string `code`, and a refusal changes nothing: the books (journal count and sum, balances, users) are read with a
 * separate client before and after every request and must differ exactly by what a 2xx said it did.
 * Writes carry odd Idempotency-Key values too: a replay (Idempotent-Replayed: true) must change nothing, and only
 * business outcomes may add a key. At the end the ledger's books checker (npm run verify) must pass.
 * FUZZ_RUNS sets the runs per route (300 by default; the long run uses 10000); FUZZ_SEED replays a failure.
 * FUZZ_REPORT=path writes the figures as JSON (the long run writes reliability/fuzz-last.json).
 */
const RUNS = fuzzRuns()
const SEED = fuzzSeed()
const ANSWER_TIMEOUT_MS = 10_000

interface Books { entries: number, total: bigint, balances: bigint, users: number, keys: number }

const BOOKS_SQL = `SELECT (SELECT count(*) FROM journal_entries)::int AS entries,
  (SELECT coalesce(sum(amount), 0) FROM journal_entries)::text AS total,
  (SELECT coalesce(sum(balance), 0) FROM users)::text AS balances,
  (SELECT count(*) FROM users)::int AS users,
  (SELECT count(*) FROM idempotency_keys)::int AS keys`

async function readBooks (client: pg.Client): Promise<Books> {
  const row = (await client.query<{ entries: number, total: string, balances: string, users: number, keys: number }>(BOOKS_SQL)).rows[0]!
  return { entries: row.entries, total: BigInt(row.total), balances: BigInt(row.balances), users: row.users, keys: row.keys }
}

/** What a successful (first, not replayed) answer says it changed in the books. */
type Effect = (body: Record<string, unknown>) => Omit<Books, 'keys'>

interface Route {
  name: string
  request: fc.Arbitrary<FuzzRequest>
  successStatus: number
  /** Undefined for a read. */
  effect?: Effect
}

const NO_CHANGE: Books = { entries: 0, total: 0n, balances: 0n, users: 0, keys: 0 }
/** Users 1..3 exist (the seed and two made at the start); 4 does not. */
const userId = fc.integer({ min: 1, max: 4 })
const limitValue = fc.oneof(fc.integer({ min: -5, max: 600 }).map(String),
  fc.constantFrom('', '1.5', '1e2', 'abc', '9007199254740993', '-0', '0x10', '%00', '500', '50&limit=2'))
const cursorValue = fc.oneof(fc.constantFrom('', 'MQ', 'Mg', 'MTA', 'MA', 'LTE', 'MS4w', 'AAAA', 'x'.repeat(23), '%2B%2F', 'MQ%3D%3D', 'OTAwNzE5OTI1NDc0MDk5Mg'),
  fc.string({ unit: 'grapheme-ascii', maxLength: 30 }).map((text) => encodeURIComponent(text)),
  fc.nat({ max: 1000 }).map((n) => Buffer.from(String(n)).toString('base64url')))

const routes: Route[] = [
  {
    name: 'PATCH /api/balance',
    successStatus: 200,
    request: fc.tuple(methodFor('PATCH'), pathFor('/api/balance'),
      bodyText([{ name: 'userId', valid: userId }, { name: 'amount', valid: fc.integer({ min: -20_000, max: 20_000 }).filter((n) => n !== 0) }]),
      contentType, extraHeaders, idempotencyKey)
      .map(([method, path, body, type, headers, key]) => assemble('patch-balance', method, path, body, type, headers, key)),
    effect: (body) => {
      const amount = BigInt(body.amount as number)
      return { entries: 1, total: amount, balances: amount, users: 0 }
    },
  },
  {
    name: 'POST /api/users',
    successStatus: 201,
    request: fc.tuple(methodFor('POST'), pathFor('/api/users'), bodyText([{ name: 'balance', valid: fc.integer({ min: 0, max: 50_000 }) }]),
      contentType, extraHeaders, idempotencyKey)
      .map(([method, path, body, type, headers, key]) => assemble('post-users', method, path, body, type, headers, key)),
    effect: (body) => {
      const balance = BigInt(body.balance as number)
      return { entries: balance > 0n ? 1 : 0, total: balance, balances: balance, users: 1 }
    },
  },
  {
    name: 'POST /api/transfers',
    successStatus: 201,
    request: fc.tuple(methodFor('POST'), pathFor('/api/transfers'),
      bodyText([{ name: 'fromUserId', valid: userId }, { name: 'toUserId', valid: userId }, { name: 'amount', valid: fc.integer({ min: 1, max: 5000 }) }]),
      contentType, extraHeaders, idempotencyKey)
      .map(([method, path, body, type, headers, key]) => assemble('post-transfers', method, path, body, type, headers, key)),
    effect: () => ({ entries: 2, total: 0n, balances: 0n, users: 0 }),
  },
  {
    name: 'GET /api/users/:id',
    successStatus: 200,
    request: fc.tuple(methodFor('GET'), idSegment, fc.option(fc.constantFrom('?x=1', '?id=2', '?' + 'a'.repeat(3000), '?%zz')), extraHeaders,
      fc.option(bodyText([{ name: 'userId', valid: fc.constant(1) }, { name: 'amount', valid: fc.constant(1) }])), contentType)
      .map(([method, id, query, headers, body, type]) =>
        assemble('get-user', method, `/api/users/${id}${query ?? ''}`, body ?? undefined, body === null ? undefined : type, headers)),
  },
  {
    name: 'GET /api/users/:id/transactions',
    successStatus: 200,
    request: fc.tuple(methodFor('GET'), idSegment, fc.option(limitValue, { freq: 2 }), fc.option(cursorValue, { freq: 2 }), fc.option(fc.constantFrom('&x=1', '&limit=1', '&before=MQ', '&' + 'b'.repeat(2000))), extraHeaders)
      .map(([method, id, limit, before, extra, headers]) => {
        const query = [limit === null ? '' : `limit=${limit}`, before === null ? '' : `before=${before}`].filter(Boolean).join('&')
        return assemble('get-transactions', method, `/api/users/${id}/transactions${query === '' && extra === null ? '' : `?${query}${extra ?? ''}`}`, undefined, undefined, headers)
      }),
  },
]

interface Figures { runs: number, statuses: Record<string, number>, codes: Record<string, number>, fiveHundreds: number, hangs: number, violations: number }

const figures: Record<string, Figures> = {}

function count (record: Record<string, number>, key: string): void {
  record[key] = (record[key] ?? 0) + 1
}

function judgeUnchanged (before: Books, after: Books): string | undefined {
  return stringify(before) === stringify(after) ? undefined : 'books changed without an answer'
}

function stringify (value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => typeof v === 'bigint' ? String(v) : v)
}

/** Outcomes the database keeps under an Idempotency-Key (business outcomes), as opposed to refusals before it. */
const KEPT_REFUSALS = new Set(['INSUFFICIENT_FUNDS', 'BALANCE_LIMIT_EXCEEDED', 'USER_NOT_FOUND'])

/** The checks on one answer; returns the violation, or undefined. */
function judge (route: Route, request: FuzzRequest, response: RawResponse, before: Books, after: Books): string | undefined {
  let body: Record<string, unknown> = {}
  try {
    body = JSON.parse(response.body) as Record<string, unknown>
  } catch {
    return `${response.status} without a JSON body: ${JSON.stringify(response.body.slice(0, 200))}`
  }
  if (response.status >= 500) return `${response.status} ${response.body.slice(0, 300)}`
  if (response.status >= 400) {
    if (typeof body.code !== 'string' || body.code === '') return `${response.status} without a string code: ${response.body.slice(0, 300)}`
    if (body.statusCode !== response.status) return `${response.status} with statusCode ${String(body.statusCode)} in the body`
  } else if (response.status !== route.successStatus) {
    return `unexpected status ${response.status}`
  }
  const replayed = response.headers['idempotent-replayed'] === 'true'
  const keyed = request.headers.some(([name]) => name.toLowerCase() === 'idempotency-key')
  const success = response.status === route.successStatus && route.effect !== undefined
  const kept = keyed && !replayed && route.effect !== undefined && (success || KEPT_REFUSALS.has(String(body.code)))
  const expected: Books = { ...(success && !replayed ? route.effect!(body) : NO_CHANGE), keys: kept ? 1 : 0 }
  const delta: Books = {
    entries: after.entries - before.entries,
    total: after.total - before.total,
    balances: after.balances - before.balances,
    users: after.users - before.users,
    keys: after.keys - before.keys,
  }
  if (stringify(delta) !== stringify(expected)) return `books changed by ${stringify(delta)} after ${response.status}${replayed ? ' (replayed)' : ''}; expected ${stringify(expected)}`
  return undefined
}

/** The failure's own message and a readable slice of the request (a counterexample can carry a 20 KiB header). */
function describeFailure (result: fc.RunDetails<[FuzzRequest]>): string {
  const error = result.errorInstance instanceof Error ? result.errorInstance.message : String(result.errorInstance)
  const request = result.counterexample?.[0]
  const shown = request === undefined ? '' : JSON.stringify({ ...request, path: request.path.slice(0, 200), headers: request.headers.map(([name, value]) => [name.slice(0, 60), value.length > 200 ? `${value.slice(0, 60)}…(${value.length} chars)` : value]) }).slice(0, 2000)
  return `${error}; seed ${result.seed}; request ${shown}`
}

t.test('fuzzing every route: never a 5xx, refusals are 4xx with a code and change nothing', async (t) => {
  const { app, db } = await build(t)
  const base = new URL(await listen(app))
  const port = Number(base.port)
  const client = new pg.Client({ connectionString: db.url })
  await client.connect()
  t.teardown(async () => { await client.end() })
  const prototypeKeys = Object.getOwnPropertyNames(Object.prototype).sort()
  for (const balance of [10_000, 10_000]) {
    const created = await app.inject({ method: 'POST', url: '/api/users', payload: { balance } })
    t.equal(created.statusCode, 201, 'a user to fuzz with')
  }

  for (const route of routes) {
    const seen: Figures = { runs: 0, statuses: {}, codes: {}, fiveHundreds: 0, hangs: 0, violations: 0 }
    figures[route.name] = seen
    const property = fc.asyncProperty(route.request, async (request) => {
      const before = await readBooks(client)
      const outcome = await rawRequest(port, request, ANSWER_TIMEOUT_MS)
      seen.runs += 1
      if (outcome.hang) {
        // Node closes a CONNECT (a proxy tunnel request) at once when nobody listens for it: closed, not hung.
        if (request.method === 'CONNECT' && !outcome.timedOut) {
          count(seen.statuses, 'closed')
          const violation = judgeUnchanged(before, await readBooks(client))
          if (violation !== undefined) throw new Error(violation)
          return
        }
        seen.hangs += 1
        throw new Error(`no answer: ${outcome.error}`)
      }
      count(seen.statuses, String(outcome.status))
      if (outcome.status >= 500) seen.fiveHundreds += 1
      try { count(seen.codes, String((JSON.parse(outcome.body) as { code?: unknown }).code ?? '-')) } catch { count(seen.codes, '(not JSON)') }
      const violation = judge(route, request, outcome, before, await readBooks(client))
      if (violation !== undefined) {
        seen.violations += 1
        throw new Error(violation)
      }
    })
    const result = await fc.check(property, { numRuns: RUNS, ...(SEED === undefined ? {} : { seed: SEED }), endOnFailure: process.env.FUZZ_SHRINK !== '1' })
    t.notOk(result.failed, `${route.name}: ${RUNS} runs${result.failed ? ` failed: ${describeFailure(result)}` : ''}`)
    t.ok(Object.keys(seen.statuses).length > 1, `${route.name}: answers vary (${JSON.stringify(seen.statuses)})`)
  }

  // Nothing a request sent reached the process's prototypes, and the books still balance per user.
  t.same(Object.getOwnPropertyNames(Object.prototype).sort(), prototypeKeys, 'Object.prototype untouched')
  t.equal(({} as Record<string, unknown>).polluted, undefined)
  const unbalanced = await client.query(`SELECT u.id FROM users u LEFT JOIN journal_entries j ON j.user_id = u.id
    GROUP BY u.id, u.balance HAVING u.balance <> coalesce(sum(j.amount), 0)`)
  t.equal(unbalanced.rowCount, 0, 'Σ journal = balance for every user')
  const books = await checkBooks(app.sequelize)
  t.ok(books.ok, `the ledger's books checker passes: ${formatReport(books)}`)

  const out = process.env.FUZZ_REPORT
  if (out !== undefined && out !== '') {
    await mkdir(new URL('.', `file://${out.startsWith('/') ? out : `${process.cwd()}/${out}`}`).pathname, { recursive: true })
    await writeFile(out, JSON.stringify({ kind: 'fuzz', finishedAt: new Date().toISOString(), runsPerRoute: RUNS, seed: SEED ?? null, routes: figures }, null, 2) + '\n')
  }
})
