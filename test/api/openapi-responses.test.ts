import http from 'node:http'
import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import OpenAPIResponseValidatorModule from 'openapi-response-validator'
import type { OpenAPIV3_1 } from 'openapi-types'
import { KEY_COUNT_REFRESH_MS } from '../../src/services/key-store-budget.js'
import { build, buildBehindProxy, listen, sql } from '../helper.js'

// Every answer the service gives, errors included, is one its OpenAPI document describes: each route is driven into
// each answer it can give (over inject, and over a real socket for what only the HTTP layer answers) and every
// response is checked by openapi-response-validator against the document the service itself serves.

// CommonJS with `exports.default`: the class sits on `.default` under NodeNext.
const OpenAPIResponseValidator = (OpenAPIResponseValidatorModule as unknown as { default: typeof OpenAPIResponseValidatorModule.default }).default

const WRITE = 'responses-write-token-0123456789'
const READ = 'responses-read-token-0123456789'
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const FORMATS = {
  uuid: (value: string) => UUID.test(value),
  'date-time': (value: string) => !Number.isNaN(Date.parse(value)) && /^\d{4}-\d\d-\d\dT/.test(value),
}

interface Call {
  /** The operation as the document names it: method and OpenAPI path. */
  operation: [method: 'get' | 'patch' | 'post', path: string]
  url: string
  payload?: string | object
  headers?: Record<string, string>
  /** The status this call must get (so a call that stopped reaching its answer is noticed too). */
  expect: number
}

interface Seen { name: string, status: number, headers: http.IncomingHttpHeaders | Record<string, unknown>, body: unknown, contentType: string }

const W = { authorization: `Bearer ${WRITE}` }
const R = { authorization: `Bearer ${READ}` }
const JSON_W = { ...W, 'content-type': 'application/json' }
const BALANCE: Call['operation'] = ['patch', '/api/balance']
const USERS: Call['operation'] = ['post', '/api/users']
const USER: Call['operation'] = ['get', '/api/users/{id}']
const HISTORY: Call['operation'] = ['get', '/api/users/{id}/transactions']
const TRANSFERS: Call['operation'] = ['post', '/api/transfers']
const HEALTH: Call['operation'] = ['get', '/api/health']
const LIVE: Call['operation'] = ['get', '/api/health/live']
const METRICS: Call['operation'] = ['get', '/metrics']
const LONG_ID = '1'.repeat(101)
const BIG = JSON.stringify({ pad: 'x'.repeat(5000) })

/** Answers with the database up. */
const upCalls: Call[] = [
  { operation: HEALTH, url: '/api/health', headers: R, expect: 200 },
  { operation: HEALTH, url: '/api/health', expect: 401 },
  { operation: LIVE, url: '/api/health/live', expect: 200 },
  { operation: METRICS, url: '/metrics', headers: R, expect: 200 },
  { operation: METRICS, url: '/metrics', expect: 401 },

  { operation: BALANCE, url: '/api/balance', payload: { userId: 1, amount: -2 }, headers: W, expect: 200 },
  { operation: BALANCE, url: '/api/balance', payload: { userId: 1, amount: -3 }, headers: { ...W, 'idempotency-key': 'doc-1' }, expect: 200 },
  { operation: BALANCE, url: '/api/balance', payload: { userId: 1, amount: -3 }, headers: { ...W, 'idempotency-key': 'doc-1' }, expect: 200 },
  { operation: BALANCE, url: '/api/balance', payload: { userId: 1, amount: 0 }, headers: W, expect: 400 },
  { operation: BALANCE, url: '/api/balance', payload: '{"userId":1,"amount":1e2}', headers: JSON_W, expect: 400 },
  { operation: BALANCE, url: '/api/balance', payload: '{"userId":1,', headers: JSON_W, expect: 400 },
  { operation: BALANCE, url: '/api/balance', payload: { userId: 1, amount: -2 }, expect: 401 },
  { operation: BALANCE, url: '/api/balance', payload: { userId: 1, amount: -2 }, headers: R, expect: 403 },
  { operation: BALANCE, url: '/api/balance', payload: { userId: 999, amount: 1 }, headers: W, expect: 404 },
  { operation: BALANCE, url: '/api/balance', payload: { userId: 1, amount: -1_000_000 }, headers: W, expect: 409 },
  { operation: BALANCE, url: '/api/balance', payload: { userId: 1, amount: Number.MAX_SAFE_INTEGER }, headers: W, expect: 409 },
  { operation: BALANCE, url: '/api/balance', payload: BIG, headers: JSON_W, expect: 413 },
  { operation: BALANCE, url: '/api/balance', payload: 'userId=1', headers: { ...W, 'content-type': 'text/plain' }, expect: 415 },
  { operation: BALANCE, url: '/api/balance', payload: { userId: 1, amount: -4 }, headers: { ...W, 'idempotency-key': 'doc-1' }, expect: 422 },

  { operation: USERS, url: '/api/users', payload: { balance: 5 }, headers: W, expect: 201 },
  { operation: USERS, url: '/api/users', payload: { balance: -1 }, headers: W, expect: 400 },
  { operation: USERS, url: '/api/users', payload: { balance: 5 }, expect: 401 },
  { operation: USERS, url: '/api/users', payload: { balance: 5 }, headers: R, expect: 403 },
  { operation: USERS, url: '/api/users', payload: BIG, headers: JSON_W, expect: 413 },
  { operation: USERS, url: '/api/users', payload: 'x', headers: { ...W, 'content-type': 'text/plain' }, expect: 415 },
  { operation: USERS, url: '/api/users', payload: { balance: 5 }, headers: { ...W, 'idempotency-key': 'doc-1' }, expect: 422 },

  { operation: USER, url: '/api/users/1', headers: R, expect: 200 },
  { operation: USER, url: '/api/users/1.0', headers: R, expect: 400 },
  { operation: USER, url: '/api/users/1', expect: 401 },
  { operation: USER, url: '/api/users/999', headers: R, expect: 404 },
  { operation: USER, url: `/api/users/${LONG_ID}`, headers: R, expect: 414 },

  { operation: HISTORY, url: '/api/users/1/transactions?limit=1', headers: R, expect: 200 },
  { operation: HISTORY, url: '/api/users/1/transactions?before=nope', headers: R, expect: 400 },
  { operation: HISTORY, url: '/api/users/1/transactions?limit=1e2', headers: R, expect: 400 },
  { operation: HISTORY, url: '/api/users/1/transactions', expect: 401 },
  { operation: HISTORY, url: '/api/users/999/transactions', headers: R, expect: 404 },
  { operation: HISTORY, url: `/api/users/${LONG_ID}/transactions`, headers: R, expect: 414 },

  { operation: TRANSFERS, url: '/api/transfers', payload: { fromUserId: 1, toUserId: 2, amount: 1 }, headers: W, expect: 201 },
  { operation: TRANSFERS, url: '/api/transfers', payload: { fromUserId: 1, toUserId: 1, amount: 1 }, headers: W, expect: 400 },
  { operation: TRANSFERS, url: '/api/transfers', payload: { fromUserId: 1, toUserId: 2, amount: 1 }, expect: 401 },
  { operation: TRANSFERS, url: '/api/transfers', payload: { fromUserId: 1, toUserId: 2, amount: 1 }, headers: R, expect: 403 },
  { operation: TRANSFERS, url: '/api/transfers', payload: { fromUserId: 1, toUserId: 999, amount: 1 }, headers: W, expect: 404 },
  { operation: TRANSFERS, url: '/api/transfers', payload: { fromUserId: 2, toUserId: 1, amount: 1_000_000 }, headers: W, expect: 409 },
  { operation: TRANSFERS, url: '/api/transfers', payload: BIG, headers: JSON_W, expect: 413 },
  { operation: TRANSFERS, url: '/api/transfers', payload: 'x', headers: { ...W, 'content-type': 'text/plain' }, expect: 415 },
  { operation: TRANSFERS, url: '/api/transfers', payload: { fromUserId: 1, toUserId: 2, amount: 1 }, headers: { ...W, 'idempotency-key': 'doc-1' }, expect: 422 },
]

/** Answers while PostgreSQL cannot be reached. */
const downCalls: Call[] = [
  { operation: HEALTH, url: '/api/health', headers: R, expect: 503 },
  { operation: BALANCE, url: '/api/balance', payload: { userId: 1, amount: -2 }, headers: W, expect: 503 },
  { operation: BALANCE, url: '/api/balance', payload: { userId: 1, amount: -2 }, headers: { ...W, 'idempotency-key': 'doc-down-1' }, expect: 503 },
  { operation: USERS, url: '/api/users', payload: { balance: 1 }, headers: W, expect: 503 },
  { operation: USER, url: '/api/users/1', headers: R, expect: 503 },
  { operation: HISTORY, url: '/api/users/1/transactions', headers: R, expect: 503 },
  { operation: TRANSFERS, url: '/api/transfers', payload: { fromUserId: 1, toUserId: 2, amount: 1 }, headers: { ...W, 'idempotency-key': 'doc-down-2' }, expect: 503 },
]

async function inject (app: FastifyInstance, call: Call): Promise<Seen> {
  const res = await app.inject({
    method: call.operation[0].toUpperCase() as 'GET',
    url: call.url,
    ...(call.payload === undefined ? {} : { payload: call.payload }),
    headers: call.headers ?? {},
  })
  const contentType = String(res.headers['content-type'] ?? '')
  return {
    name: `${call.operation[0].toUpperCase()} ${call.url.slice(0, 60)} ${call.headers?.['idempotency-key'] ?? ''}`.trim(),
    status: res.statusCode,
    headers: res.headers,
    body: contentType.startsWith('application/json') ? res.json() : res.body,
    contentType,
  }
}

/** One request over a real socket (for the HTTP layer's own answers, which inject bypasses). */
async function raw (base: string, path: string, headers: Record<string, string>): Promise<Omit<Seen, 'name'>> {
  return await new Promise((resolve, reject) => {
    const request = http.get(new URL(path, base), { headers, agent: false }, (response) => {
      const chunks: Buffer[] = []
      response.on('data', (chunk: Buffer) => chunks.push(chunk))
      response.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        resolve({ status: response.statusCode ?? 0, headers: response.headers, body: JSON.parse(text), contentType: String(response.headers['content-type'] ?? '') })
      })
    })
    request.on('error', reject)
  })
}

type Checked = (operation: Call['operation'], seen: Seen) => void

/** Checks a response against the document: status, body (openapi-response-validator), media type, headers that matter. */
function checker (t: Test, document: OpenAPIV3_1.Document): Checked {
  const validators = new Map<string, InstanceType<typeof OpenAPIResponseValidator>>()
  return ([method, path], seen) => {
    const operation = document.paths?.[path]?.[method]
    if (operation === undefined) { t.fail(`${method} ${path} is not in the document`); return }
    const key = `${method} ${path}`
    let validator = validators.get(key)
    if (validator === undefined) {
      validator = new OpenAPIResponseValidator({
        responses: operation.responses as never,
        components: document.components as never,
        customFormats: FORMATS,
      })
      validators.set(key, validator)
    }
    const failure = validator.validateResponse(seen.status, seen.body)
    t.equal(failure, undefined, `${seen.name} → ${seen.status}: described by the document${failure === undefined ? '' : ` (${JSON.stringify(failure.errors)})`}`)
    const described = operation.responses?.[String(seen.status)] as OpenAPIV3_1.ResponseObject | undefined
    if (described === undefined) return
    const mediaType = seen.contentType.split(';')[0]!
    t.ok(Object.keys(described.content ?? {}).includes(mediaType), `${seen.name} → ${seen.status}: media type ${mediaType} is the documented one`)
    for (const header of ['retry-after', 'www-authenticate']) {
      if (seen.headers[header] === undefined) continue
      const documented = Object.keys(described.headers ?? {}).map((name) => name.toLowerCase())
      t.ok(documented.includes(header), `${seen.name} → ${seen.status}: header ${header} is documented`)
    }
    if (seen.status === 401) t.equal(seen.headers['www-authenticate'], 'Bearer realm="balance-api"', `${seen.name}: 401 carries WWW-Authenticate`)
  }
}

t.test('every answer of every route, errors included, is described by the OpenAPI document', async (t) => {
  const { app, proxy } = await buildBehindProxy(t, 'openapi-responses', {
    API_TOKENS: WRITE,
    API_READ_TOKENS: READ,
    DB_POOL_MAX: '2',
    DB_CONNECT_TIMEOUT_MS: '500',
    DB_ACQUIRE_TIMEOUT_MS: '2000',
  })
  const docs = await app.inject({ url: '/docs/json', headers: R })
  t.equal(docs.statusCode, 200)
  const check = checker(t, docs.json() as OpenAPIV3_1.Document)
  const second = await app.inject({ method: 'POST', url: '/api/users', payload: { balance: 0 }, headers: W })
  t.equal(second.json().id, 2, 'a second user for transfers')

  const statuses = new Map<string, Set<number>>()
  const record = (operation: Call['operation'], status: number): void => {
    const key = operation.join(' ')
    statuses.set(key, (statuses.get(key) ?? new Set()).add(status))
  }
  for (const call of upCalls) {
    const seen = await inject(app, call)
    t.equal(seen.status, call.expect, `${seen.name}: ${call.expect}`)
    check(call.operation, seen)
    record(call.operation, seen.status)
  }

  // Headers over 16 KB: answered by the HTTP layer before any route, on every route.
  const base = await listen(app)
  for (const [operation, path] of [[HEALTH, '/api/health'], [LIVE, '/api/health/live'], [BALANCE, '/api/balance'], [USER, '/api/users/1'], [METRICS, '/metrics']] as const) {
    const seen = { name: `GET ${path} with 17 KB of headers`, ...await raw(base, path, { ...R, 'x-pad': 'x'.repeat(17 * 1024) }) }
    t.equal(seen.status, 431, seen.name)
    check(operation, seen)
    record(operation, seen.status)
  }

  await proxy.cut()
  for (const call of downCalls) {
    const seen = await inject(app, call)
    t.equal(seen.status, call.expect, `${seen.name} (database cut): ${call.expect}`)
    check(call.operation, seen)
    record(call.operation, seen.status)
  }
  await proxy.restore()

  t.same(Object.fromEntries([...statuses].map(([key, set]) => [key, [...set].sort()])), {
    'get /api/health': [200, 401, 431, 503],
    'get /api/health/live': [200, 431],
    'get /metrics': [200, 401, 431],
    'patch /api/balance': [200, 400, 401, 403, 404, 409, 413, 415, 422, 431, 503],
    'post /api/users': [201, 400, 401, 403, 413, 415, 422, 503],
    'get /api/users/{id}': [200, 400, 401, 404, 414, 431, 503],
    'get /api/users/{id}/transactions': [200, 400, 401, 404, 414, 503],
    'post /api/transfers': [201, 400, 401, 403, 404, 409, 413, 415, 422, 503],
  }, 'each route was driven into each of these answers')
})

t.test('a 503 says what is true for the request: retry with the key, check before resending, or just retry', async (t) => {
  const { app, proxy } = await buildBehindProxy(t, 'unavailable-advice', { DB_POOL_MAX: '2', DB_CONNECT_TIMEOUT_MS: '500', DB_ACQUIRE_TIMEOUT_MS: '2000' })
  await proxy.cut()
  const keyed = 'The database is unavailable; retry with the same Idempotency-Key to learn the outcome'
  const keyless = 'The database is unavailable; the write may or may not have been applied. Before sending it again, look at ' +
    'the user\'s transactions (GET /api/users/{id}/transactions): without an Idempotency-Key a retry can apply it twice. ' +
    'Send an Idempotency-Key to make retries safe'
  const read = 'The database is unavailable; nothing was changed; retry'
  for (const [what, call, message] of [
    ['a keyed change', { method: 'PATCH', url: '/api/balance', payload: { userId: 1, amount: -2 }, headers: { 'idempotency-key': 'advice-1' } }, keyed],
    ['a keyless change', { method: 'PATCH', url: '/api/balance', payload: { userId: 1, amount: -2 } }, keyless],
    ['a keyed transfer', { method: 'POST', url: '/api/transfers', payload: { fromUserId: 1, toUserId: 2, amount: 1 }, headers: { 'idempotency-key': 'advice-2' } }, keyed],
    ['a keyless transfer', { method: 'POST', url: '/api/transfers', payload: { fromUserId: 1, toUserId: 2, amount: 1 } }, keyless],
    ['a keyed user creation', { method: 'POST', url: '/api/users', payload: { balance: 1 }, headers: { 'idempotency-key': 'advice-3' } }, keyed],
    ['a keyless user creation', { method: 'POST', url: '/api/users', payload: { balance: 1 } }, keyless],
    ['a read', { method: 'GET', url: '/api/users/1' }, read],
    ['a history', { method: 'GET', url: '/api/users/1/transactions' }, read],
  ] as const) {
    const res = await app.inject(call as never)
    t.equal(res.statusCode, 503, `${what}: 503`)
    t.same(res.json(), { statusCode: 503, code: 'DB_UNAVAILABLE', error: 'Service Unavailable', message }, `${what}: the message`)
  }
})

t.test('503 OVERLOADED, with its Retry-After, is described by the document on every keyed write', async (t) => {
  const { app } = await build(t, { env: { IDEMPOTENCY_MAX_KEYS: '1000' } })
  const docs = await app.inject({ url: '/docs/json' })
  const check = checker(t, docs.json() as OpenAPIV3_1.Document)
  await sql(app, `INSERT INTO idempotency_keys (key, request_fingerprint, result, expires_at)
    SELECT 'full-' || i, 'x', '{}'::jsonb, now() + interval '1 hour' FROM generate_series(1, 1200) i`)
  await sql(app, 'SELECT pg_stat_force_next_flush()')
  // The estimate is read beside keyed writes, at most once a second: write until one is refused.
  for (let attempt = 1; attempt <= 20; attempt += 1) {
    const probe = await app.inject({ method: 'PATCH', url: '/api/balance', payload: { userId: 1, amount: 1 }, headers: { 'idempotency-key': `probe-${attempt}` } })
    if (probe.statusCode === 503) break
    await new Promise((resolve) => setTimeout(resolve, KEY_COUNT_REFRESH_MS / 4))
  }
  const calls: Call[] = [
    { operation: BALANCE, url: '/api/balance', payload: { userId: 1, amount: 1 }, headers: { 'idempotency-key': 'full-a' }, expect: 503 },
    { operation: USERS, url: '/api/users', payload: { balance: 1 }, headers: { 'idempotency-key': 'full-b' }, expect: 503 },
    { operation: TRANSFERS, url: '/api/transfers', payload: { fromUserId: 1, toUserId: 2, amount: 1 }, headers: { 'idempotency-key': 'full-c' }, expect: 503 },
  ]
  for (const call of calls) {
    const seen = await inject(app, call)
    t.equal(seen.status, 503, `${seen.name}: 503`)
    t.match(seen.body, { code: 'OVERLOADED' }, `${seen.name}: OVERLOADED`)
    t.equal(seen.headers['retry-after'], '60', `${seen.name}: Retry-After`)
    check(call.operation, seen)
  }
})
