import http from 'node:http'
import t from 'tap'
import { buildApp } from '../../src/app.js'
import { loadConfig } from '../../src/config.js'
import { createThrowawayDatabase } from '../../src/tooling/throwaway-database.js'
import { build, listen, testConfig } from '../helper.js'

const TOKEN_A = 'token-a-0123456789abcdef'
const TOKEN_B = 'token-b-fedcba9876543210'
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

t.test('request ids: a sane x-request-id is kept and echoed, anything else replaced; every request log line carries it', async (t) => {
  const db = await createThrowawayDatabase('request-id')
  t.teardown(db.drop)
  const lines: Array<Record<string, unknown>> = []
  const app = await buildApp(testConfig(db.url, 'advisory', { LOG_LEVEL: 'debug' }), {
    logStream: { write: (line) => { lines.push(JSON.parse(line) as Record<string, unknown>) } },
  })
  t.teardown(async () => { await app.close() })

  const kept = await app.inject({ method: 'PATCH', url: '/api/balance', payload: { userId: 1, amount: -1_000_000 }, headers: { 'x-request-id': 'trace-42/abc:DEF' } })
  t.equal(kept.statusCode, 409)
  t.equal(kept.headers['x-request-id'], 'trace-42/abc:DEF', 'echoed')
  const mine = lines.filter((line) => line.reqId === 'trace-42/abc:DEF')
  t.same(mine.map((line) => line.msg), ['incoming request', 'request completed'], 'the request\'s lines carry its id')
  t.ok(mine.every((line) => line.level === 20), 'a refused change is logged at debug, not info')
  t.notOk(lines.some((line) => (line.level as number) >= 30 && line.reqId !== undefined), 'no info line per request')

  const generated = await app.inject('/api/health/live')
  t.match(generated.headers['x-request-id'], UUID, 'generated when absent')
  for (const bad of ['x'.repeat(129), 'has space', 'tab\there', '']) {
    const res = await app.inject({ url: '/api/health/live', headers: { 'x-request-id': bad } })
    t.match(res.headers['x-request-id'], UUID, `replaced: ${JSON.stringify(bad.slice(0, 10))}`)
  }
  t.equal((await app.inject({ url: '/api/health/live', headers: { 'x-request-id': 'y'.repeat(128) } })).headers['x-request-id'], 'y'.repeat(128), '128 characters are fine')
  const notFound = await app.inject({ url: '/nowhere', headers: { 'x-request-id': 'lost-1' } })
  t.equal(notFound.statusCode, 404)
  t.equal(notFound.headers['x-request-id'], 'lost-1', 'echoed on a 404 too')
  const invalid = await app.inject({ method: 'PATCH', url: '/api/balance', payload: '{', headers: { 'content-type': 'application/json', 'x-request-id': 'bad-json-1' } })
  t.equal(invalid.statusCode, 400)
  t.equal(invalid.headers['x-request-id'], 'bad-json-1', 'and on a 400')
  t.ok(lines.filter((line) => line.req !== undefined || line.res !== undefined).every((line) => typeof line.reqId === 'string'), 'every request line has a reqId')
})

// Auth (every /api route but the probes, /metrics and /docs by switch): test/api/auth.test.ts.

t.test('API_TOKENS is validated at start', async (t) => {
  t.throws(() => loadConfig({ API_TOKENS: 'short' }, false), /API_TOKENS/, 'a token under 16 characters')
  t.throws(() => loadConfig({ API_TOKENS: `${TOKEN_A},,${TOKEN_B}` }, false), /API_TOKENS/, 'an empty token')
  t.throws(() => loadConfig({ API_TOKENS: `${TOKEN_A} ${TOKEN_B}` }, false), /API_TOKENS/, 'a space')
  t.equal(loadConfig({ API_TOKENS: `${TOKEN_A},${TOKEN_B}` }, false).API_TOKENS, `${TOKEN_A},${TOKEN_B}`)
  t.equal(loadConfig({}, false).API_TOKENS, undefined, 'unset by default')
  t.equal(loadConfig({}, false).METRICS_ENABLED, true, 'metrics on by default')
  t.equal(loadConfig({ DATABASE_URL: '', API_TOKENS: '' }, false).DATABASE_URL, undefined, 'an empty value means unset')
})

t.test('health: /api/health keeps its contract, /api/health/live answers for the process alone', async (t) => {
  const { app } = await build(t)
  const health = await app.inject('/api/health')
  t.equal(health.statusCode, 200)
  t.same(health.json(), { status: 'ok', db: 'up' })
  const live = await app.inject('/api/health/live')
  t.equal(live.statusCode, 200)
  t.same(live.json(), { status: 'ok' })
  // The pool is closed: the database is gone for this app, the process is not.
  await app.sequelize.connectionManager.close()
  t.same((await app.inject('/api/health/live')).json(), { status: 'ok' }, 'live does not touch the database')
})

t.test('security headers and limits', async (t) => {
  const { app } = await build(t)
  // A JSON answer gets the API set (OWASP REST): nosniff, no framing, no caching, HSTS, and nothing a document needs.
  const res = await app.inject('/api/users/1')
  t.same(Object.fromEntries(['cache-control', 'content-security-policy', 'strict-transport-security', 'x-content-type-options', 'x-frame-options'].map((name) => [name, res.headers[name]])), {
    'cache-control': 'no-store',
    'content-security-policy': "frame-ancestors 'none'",
    'strict-transport-security': 'max-age=31536000; includeSubDomains',
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'DENY',
  })
  t.equal(res.headers['cross-origin-opener-policy'], undefined, 'no document policies on a JSON answer')
  const missing = await app.inject('/api/nowhere')
  t.equal(missing.headers['x-frame-options'], 'DENY', 'a 404 too')
  // The docs pages (HTML) keep helmet's full set.
  const page = await app.inject('/docs')
  t.match(page.headers['content-security-policy'], /default-src 'self'/)
  t.equal(page.headers['cross-origin-opener-policy'], 'same-origin')
  t.equal(page.headers['x-frame-options'], 'SAMEORIGIN')
  t.equal((await app.inject('/docsx')).headers['x-frame-options'], 'DENY', 'a path that only starts like /docs is not a docs page')

  const big = await app.inject({ method: 'PATCH', url: '/api/balance', payload: JSON.stringify({ userId: 1, amount: 1, pad: 'x'.repeat(5000) }), headers: { 'content-type': 'application/json' } })
  t.equal(big.statusCode, 413, 'a body over 4 KB')
  t.same(big.json(), { statusCode: 413, code: 'FST_ERR_CTP_BODY_TOO_LARGE', error: 'Payload Too Large', message: 'Request body is too large' })
  const longParam = await app.inject(`/api/users/${'1'.repeat(101)}`)
  t.equal(longParam.statusCode, 414, 'a path parameter over 100 characters')
  t.match(longParam.json(), { statusCode: 414, code: 'FST_ERR_MAX_PARAM_LENGTH', error: 'URI Too Long' })
  t.match(longParam.headers['x-request-id'], UUID, 'with a request id')

  // Header limits are Node's: only a real socket shows them.
  const base = new URL(await listen(app))
  const status = await new Promise<number>((resolve, reject) => {
    const req = http.request({ host: base.hostname, port: base.port, path: '/api/health/live', headers: { 'x-big': 'x'.repeat(17 * 1024) }, agent: false })
    req.on('response', (response) => { response.resume(); resolve(response.statusCode ?? 0) })
    req.on('error', reject)
    req.setTimeout(10_000, () => { req.destroy(new Error('timeout')) })
    req.end()
  })
  t.equal(status, 431, 'headers over 16 KB')
  t.equal(app.server.maxConnections, 15000)
  t.equal(app.server.maxHeadersCount, 100)
})
