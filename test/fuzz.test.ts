import { mkdir, writeFile } from 'node:fs/promises'
import fc from 'fast-check'
import pg from 'pg'
import t from 'tap'
import { build, listen } from './helper.js'
import { assemble, bodyText, contentType, extraHeaders, fuzzRuns, fuzzSeed, idSegment, methodFor, pathFor, type FuzzRequest } from './support/fuzz.js'
import { rawRequest, type RawResponse } from './support/raw-http.js'

/**
 * Fuzzing every route over real sockets against a live service on real PostgreSQL (issue 6, part 1).
 * For each generated request: an answer within a bounded time, never a 5xx, every refusal a 4xx whose body has a
 * string `code`, and a refusal changes nothing: the books (journal count and sum, balances, users) are read with a
 * separate client before and after every request and must differ exactly by what a 2xx said it did.
 * FUZZ_RUNS sets the runs per route (300 by default; the long run uses 10000); FUZZ_SEED replays a failure.
 * FUZZ_REPORT=path writes the figures as JSON (the long run writes reliability/fuzz-last.json).
 */
const RUNS = fuzzRuns()
const SEED = fuzzSeed()
const ANSWER_TIMEOUT_MS = 10_000

interface Books { entries: number, total: bigint, balances: bigint, users: number }

const BOOKS_SQL = `SELECT (SELECT count(*) FROM journal_entries)::int AS entries,
  (SELECT coalesce(sum(amount), 0) FROM journal_entries)::text AS total,
  (SELECT coalesce(sum(balance), 0) FROM users)::text AS balances,
  (SELECT count(*) FROM users)::int AS users`

async function readBooks (client: pg.Client): Promise<Books> {
  const row = (await client.query<{ entries: number, total: string, balances: string, users: number }>(BOOKS_SQL)).rows[0]!
  return { entries: row.entries, total: BigInt(row.total), balances: BigInt(row.balances), users: row.users }
}

/** What a successful answer says it changed; undefined for a read. */
type Effect = (response: RawResponse, body: Record<string, unknown>) => Books | undefined

interface Route {
  name: string
  request: fc.Arbitrary<FuzzRequest>
  successStatus: number
  effect: Effect
}

const NO_CHANGE: Books = { entries: 0, total: 0n, balances: 0n, users: 0 }

const routes: Route[] = [
  {
    name: 'PATCH /api/balance',
    successStatus: 200,
    request: fc.tuple(methodFor('PATCH'), pathFor('/api/balance'),
      bodyText([{ name: 'userId', valid: fc.integer({ min: 1, max: 3 }) }, { name: 'amount', valid: fc.integer({ min: -20_000, max: 20_000 }).filter((n) => n !== 0) }]),
      contentType, extraHeaders)
      .map(([method, path, body, type, headers]) => assemble('patch-balance', method, path, body, type, headers)),
    effect: (_response, body) => {
      const amount = BigInt(body.amount as number)
      return { entries: 1, total: amount, balances: amount, users: 0 }
    },
  },
  {
    name: 'GET /api/users/:id',
    successStatus: 200,
    request: fc.tuple(methodFor('GET'), idSegment, fc.option(fc.constantFrom('?x=1', '?id=2', '?' + 'a'.repeat(3000), '?%zz')), extraHeaders,
      fc.option(bodyText([{ name: 'userId', valid: fc.constant(1) }, { name: 'amount', valid: fc.constant(1) }])), contentType)
      .map(([method, id, query, headers, body, type]) =>
        assemble('get-user', method, `/api/users/${id}${query ?? ''}`, body ?? undefined, body === null ? undefined : type, headers)),
    effect: () => undefined,
  },
]

interface Figures { runs: number, statuses: Record<string, number>, codes: Record<string, number>, fiveHundreds: number, hangs: number, violations: number }

const figures: Record<string, Figures> = {}

function count (record: Record<string, number>, key: string): void {
  record[key] = (record[key] ?? 0) + 1
}

function judgeUnchanged (before: Books, after: Books): string | undefined {
  const same = before.entries === after.entries && before.total === after.total && before.balances === after.balances && before.users === after.users
  return same ? undefined : 'books changed without an answer'
}

/** The checks on one answer; returns the violation, or undefined. */
function judge (route: Route, response: RawResponse, before: Books, after: Books): string | undefined {
  let body: Record<string, unknown> = {}
  try {
    body = JSON.parse(response.body) as Record<string, unknown>
  } catch {
    return `${response.status} without a JSON body: ${JSON.stringify(response.body.slice(0, 200))}`
  }
  if (response.status >= 500) return `${response.status} ${response.body.slice(0, 300)}`
  const delta: Books = {
    entries: after.entries - before.entries,
    total: after.total - before.total,
    balances: after.balances - before.balances,
    users: after.users - before.users,
  }
  const expected = response.status === route.successStatus ? route.effect(response, body) ?? NO_CHANGE : NO_CHANGE
  if (response.status >= 400) {
    if (typeof body.code !== 'string' || body.code === '') return `${response.status} without a string code: ${response.body.slice(0, 300)}`
    if (body.statusCode !== response.status) return `${response.status} with statusCode ${String(body.statusCode)} in the body`
  } else if (response.status !== route.successStatus) {
    return `unexpected status ${response.status}`
  }
  if (delta.entries !== expected.entries || delta.total !== expected.total || delta.balances !== expected.balances || delta.users !== expected.users) {
    return `books changed by ${JSON.stringify(delta, (_k, v: unknown) => typeof v === 'bigint' ? String(v) : v)} after ${response.status}; expected ${JSON.stringify(expected, (_k, v: unknown) => typeof v === 'bigint' ? String(v) : v)}`
  }
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
      const violation = judge(route, outcome, before, await readBooks(client))
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

  const out = process.env.FUZZ_REPORT
  if (out !== undefined && out !== '') {
    await mkdir(new URL('.', `file://${out.startsWith('/') ? out : `${process.cwd()}/${out}`}`).pathname, { recursive: true })
    await writeFile(out, JSON.stringify({ kind: 'fuzz', finishedAt: new Date().toISOString(), runsPerRoute: RUNS, seed: SEED ?? null, routes: figures }, null, 2) + '\n')
  }
})
