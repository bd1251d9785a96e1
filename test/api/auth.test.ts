import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { loadConfig } from '../../src/config.js'
import { build, books } from '../helper.js'

// With tokens set, every route under /api but the liveness probe needs a bearer token, reads included
// (balances, histories and other clients' Idempotency-Keys are not public); /metrics and /docs by their own switch.
const WRITE = 'auth-write-token-0123456789'
const OTHER_WRITE = 'auth-other-token-9876543210'
const READ = 'auth-read-token-0123456789'

interface Call { method: 'GET' | 'PATCH' | 'POST', url: string, payload?: object }

const reads: Call[] = [
  { method: 'GET', url: '/api/users/1' },
  { method: 'GET', url: '/api/users/1/transactions' },
  { method: 'GET', url: '/api/users/999' },
  { method: 'GET', url: '/api/no-such-route' },
  { method: 'GET', url: '/api/health' },
]
const writes: Call[] = [
  { method: 'PATCH', url: '/api/balance', payload: { userId: 1, amount: -2 } },
  { method: 'POST', url: '/api/users', payload: { balance: 5 } },
  { method: 'POST', url: '/api/transfers', payload: { fromUserId: 1, toUserId: 2, amount: 1 } },
  { method: 'POST', url: '/api/route-added-later', payload: {} },
]
const probes: Call[] = [{ method: 'GET', url: '/api/health/live' }]
const operations: Call[] = [{ method: 'GET', url: '/metrics' }, { method: 'GET', url: '/docs/json' }, { method: 'GET', url: '/docs/yaml' }]

const UNAUTHORIZED = {
  statusCode: 401,
  code: 'UNAUTHORIZED',
  error: 'Unauthorized',
  message: 'This route needs an "Authorization: Bearer <token>" header with a valid token',
}
const FORBIDDEN = {
  statusCode: 403,
  code: 'FORBIDDEN',
  error: 'Forbidden',
  message: 'This token may only read (it is one of API_READ_TOKENS); a write needs one of API_TOKENS',
}

async function send (app: FastifyInstance, call: Call, token?: string): Promise<{ status: number, body: Record<string, unknown>, authenticate: unknown }> {
  const res = await app.inject({
    method: call.method,
    url: call.url,
    ...(call.payload === undefined ? {} : { payload: call.payload }),
    headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
  })
  const body = res.headers['content-type']?.toString().startsWith('application/json') === true ? res.json() : {}
  return { status: res.statusCode, body, authenticate: res.headers['www-authenticate'] }
}

async function secondUser (app: FastifyInstance, token?: string): Promise<void> {
  const res = await app.inject({ method: 'POST', url: '/api/users', payload: { balance: 0 }, headers: token === undefined ? {} : { authorization: `Bearer ${token}` } })
  if (res.statusCode !== 201) throw new Error(`user 2: ${res.statusCode} ${res.body}`)
}

t.test('tokens unset: no route asks for one', async (t) => {
  const { app } = await build(t)
  await secondUser(app)
  for (const call of [...reads, ...writes, ...probes, ...operations]) {
    const res = await send(app, call)
    t.not(res.status, 401, `${call.method} ${call.url}: ${res.status}`)
    t.not(res.status, 403, `${call.method} ${call.url}: not 403`)
  }
})

t.test('tokens set: every /api route but the liveness probe needs one; reads included; nothing changes without one', async (t) => {
  const { app } = await build(t, { env: { API_TOKENS: `${WRITE},${OTHER_WRITE}`, API_READ_TOKENS: READ } })
  await secondUser(app, WRITE)
  const before = await books(app, 1)
  for (const call of [...reads, ...writes, ...operations]) {
    for (const [what, authorization] of [
      ['no header', undefined],
      ['a wrong token', 'Bearer auth-wrong-token-0123456789'],
      ['a prefix of a token', `Bearer ${WRITE.slice(0, -1)}`],
      ['a token plus more', `Bearer ${WRITE}x`],
      ['another scheme', `Basic ${WRITE}`],
      ['the bare token', WRITE],
      ['two tokens', `Bearer ${WRITE},${READ}`],
    ] as const) {
      const res = await app.inject({ method: call.method, url: call.url, ...(call.payload === undefined ? {} : { payload: call.payload }), headers: authorization === undefined ? {} : { authorization } })
      t.equal(res.statusCode, 401, `${call.method} ${call.url} with ${what}: 401`)
      t.same(res.json(), UNAUTHORIZED, `${call.method} ${call.url} with ${what}: body`)
      t.equal(res.headers['www-authenticate'], 'Bearer realm="balance-api"')
    }
  }
  const badJson = await app.inject({ method: 'PATCH', url: '/api/balance', payload: '{', headers: { 'content-type': 'application/json' } })
  t.equal(badJson.statusCode, 401, 'checked before the body is parsed')
  for (const call of probes) t.equal((await send(app, call)).status, 200, `${call.url} stays open (the liveness probe says only that the process runs)`)
  t.same(await books(app, 1), before, 'no refused request changed anything')

  t.same((await send(app, reads[0]!, WRITE)).status, 200, 'a read with a read-write token')
  t.same((await send(app, reads[0]!, READ)).status, 200, 'a read with a read-only token')
  t.same((await send(app, reads[1]!, READ)).status, 200, 'a history with a read-only token')
  t.same((await send(app, reads[2]!, READ)).body.code, 'USER_NOT_FOUND', 'authorized, then looked up')
  t.same((await send(app, reads[3]!, READ)).body.code, 'ROUTE_NOT_FOUND', 'an unknown route is a 404 only to a caller with a token')
  for (const call of operations) t.equal((await send(app, call, READ)).status, 200, `${call.url} with a read-only token`)

  for (const call of writes) {
    const res = await send(app, call, READ)
    t.equal(res.status, 403, `${call.method} ${call.url} with a read-only token: 403`)
    t.same(res.body, FORBIDDEN)
  }
  t.same(await books(app, 1), before, 'no write with a read-only token changed anything')

  t.equal((await send(app, writes[0]!, WRITE)).status, 200, 'a write with the first token')
  t.equal((await app.inject({ method: 'PATCH', url: '/api/balance', payload: { userId: 1, amount: -2 }, headers: { authorization: `bearer ${OTHER_WRITE}` } })).statusCode, 200, 'the second token, scheme in any case')
  t.equal((await send(app, writes[2]!, OTHER_WRITE)).status, 201, 'a transfer')
  t.equal((await app.inject({ method: 'PATCH', url: '/api/balance', payload: { userId: 1, amount: 0 }, headers: { authorization: `Bearer ${WRITE}` } })).statusCode, 400, 'authorized, then validated')
  t.same(await books(app, 1), { balance: before.balance - 5, journalSum: before.balance - 5, entries: before.entries + 3 })
  t.equal((await send(app, { method: 'POST', url: '/elsewhere' })).status, 404, 'outside /api, /metrics and /docs nothing is guarded')
})

t.test('METRICS_AUTH=open and DOCS_AUTH=open leave those open while /api stays closed', async (t) => {
  const { app } = await build(t, { env: { API_TOKENS: WRITE, METRICS_AUTH: 'open', DOCS_AUTH: 'open' } })
  for (const call of operations) t.equal((await send(app, call)).status, 200, `${call.url} open`)
  t.equal((await send(app, reads[0]!)).status, 401, 'reads under /api still need a token')
  const document = (await app.inject('/docs/json')).json()
  t.equal(document.paths['/metrics'].get.security, undefined, 'the document shows /metrics without security')
  t.notOk('401' in document.paths['/metrics'].get.responses, 'and without a 401')
  t.same(document.paths['/api/users/{id}'].get.security, [{ bearerAuth: [] }], 'and a read under /api with it')
})

t.test('read-only tokens alone: reads work, every write is 403', async (t) => {
  const { app } = await build(t, { env: { API_READ_TOKENS: READ } })
  t.equal((await send(app, reads[0]!)).status, 401)
  t.equal((await send(app, reads[0]!, READ)).status, 200)
  t.equal((await send(app, writes[0]!, READ)).status, 403)
})

t.test('token settings are validated at start', async (t) => {
  t.throws(() => loadConfig({ API_READ_TOKENS: 'short' }, false), /API_READ_TOKENS/, 'a read token under 16 characters')
  t.throws(() => loadConfig({ API_READ_TOKENS: `${READ},,${WRITE}` }, false), /API_READ_TOKENS/, 'an empty read token')
  t.throws(() => loadConfig({ METRICS_AUTH: 'public' }, false), /METRICS_AUTH/)
  t.throws(() => loadConfig({ DOCS_AUTH: 'none' }, false), /DOCS_AUTH/)
  t.match(loadConfig({}, false), { METRICS_AUTH: 'token', DOCS_AUTH: 'token', API_READ_TOKENS: undefined }, 'defaults')
})
