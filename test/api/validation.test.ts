import t from 'tap'
import { build, books, sql } from '../helper.js'

// Every malformed request gets a 4xx with a stable code and changes nothing.
const JSON_TYPE = { 'content-type': 'application/json' }

interface Case { name: string, payload: string, headers?: Record<string, string>, status: number, code: string }

const bodies: Array<[string, unknown]> = [
  ['missing amount', { userId: 1 }],
  ['missing userId', { amount: 5 }],
  ['empty object', {}],
  ['typo ammount', { userId: 1, ammount: 5 }],
  ['extra property', { userId: 1, amount: 5, note: 'x' }],
  ['amount zero', { userId: 1, amount: 0 }],
  ['amount as string', { userId: 1, amount: '5' }],
  ['amount null', { userId: 1, amount: null }],
  ['amount boolean', { userId: 1, amount: true }],
  ['amount array', { userId: 1, amount: [5] }],
  ['amount object', { userId: 1, amount: { value: 5 } }],
  ['amount above 2^53-1', { userId: 1, amount: 9007199254740992 }],
  ['amount below -(2^53-1)', { userId: 1, amount: -9007199254740992 }],
  ['userId zero', { userId: 0, amount: 5 }],
  ['userId negative', { userId: -1, amount: 5 }],
  ['userId string', { userId: '1', amount: 5 }],
  ['userId above 2^53-1', { userId: 9007199254740992, amount: 5 }],
  ['body is an array', [{ userId: 1, amount: 5 }]],
  ['body is a number', 5],
  ['body is a string', 'hello'],
  ['body is null', null],
]

const cases: Case[] = [
  ...bodies.map(([name, body]) => ({ name, payload: JSON.stringify(body), status: 400, code: 'FST_ERR_VALIDATION' })),
  { name: 'amount float', payload: '{"userId":1,"amount":1.5}', status: 400, code: 'FST_ERR_VALIDATION' },
  { name: 'amount 1e300', payload: '{"userId":1,"amount":1e+300}', status: 400, code: 'FST_ERR_VALIDATION' },
  { name: 'userId float', payload: '{"userId":1.5,"amount":5}', status: 400, code: 'FST_ERR_VALIDATION' },
  { name: 'malformed JSON', payload: '{"userId":1,', status: 400, code: 'FST_ERR_CTP_INVALID_JSON_BODY' },
  { name: 'empty body with JSON content type', payload: '', status: 400, code: 'FST_ERR_CTP_EMPTY_JSON_BODY' },
  { name: 'prototype poisoning', payload: '{"userId":1,"amount":5,"__proto__":{"x":1}}', status: 400, code: 'FST_ERR_CTP_INVALID_JSON_BODY' },
  { name: 'text/plain body', payload: 'userId=1&amount=5', headers: { 'content-type': 'text/plain' }, status: 415, code: 'FST_ERR_CTP_INVALID_MEDIA_TYPE' },
  { name: 'form body', payload: 'userId=1&amount=5', headers: { 'content-type': 'application/x-www-form-urlencoded' }, status: 415, code: 'FST_ERR_CTP_INVALID_MEDIA_TYPE' },
  { name: 'body over the limit', payload: JSON.stringify({ userId: 1, amount: 5, pad: 'x'.repeat(8192) }), status: 413, code: 'FST_ERR_CTP_BODY_TOO_LARGE' },
]

t.test('malformed PATCH /api/balance bodies', async (t) => {
  const { app } = await build(t)
  const before = await books(app, 1)
  for (const c of cases) {
    const res = await app.inject({ method: 'PATCH', url: '/api/balance', payload: c.payload, headers: c.headers ?? JSON_TYPE })
    t.equal(res.statusCode, c.status, `${c.name}: status`)
    const body = res.json()
    t.equal(body.code, c.code, `${c.name}: code`)
    t.equal(body.statusCode, c.status, `${c.name}: statusCode in body`)
    t.type(body.message, 'string', `${c.name}: message`)
  }
  // Refused at the edge: had one of them reached the balance service, a balance_changes_* series would exist.
  t.notMatch((await app.inject('/metrics')).body, /^balance_changes_\w+_total\{/m, `none of the ${cases.length} malformed bodies reached the balance service`)
  t.same(await books(app, 1), before, 'nothing changed')
})

t.test('malformed ids and routes', async (t) => {
  const { app } = await build(t)
  for (const id of ['abc', '0', '-1', '1.5', '9007199254740992', '1e3x']) {
    const res = await app.inject({ method: 'GET', url: `/api/users/${id}` })
    t.equal(res.statusCode, 400, `GET /api/users/${id}`)
    t.equal(res.json().code, 'FST_ERR_VALIDATION')
  }
  const unknown = await app.inject({ method: 'GET', url: '/api/nope' })
  t.equal(unknown.statusCode, 404)
  t.same(unknown.json(), { statusCode: 404, code: 'ROUTE_NOT_FOUND', error: 'Not Found', message: 'Route GET /api/nope not found' })
  const wrongMethod = await app.inject({ method: 'POST', url: '/api/balance', payload: { userId: 1, amount: 1 } })
  t.equal(wrongMethod.statusCode, 404)
  t.equal(wrongMethod.json().code, 'ROUTE_NOT_FOUND')
})

// JSON.parse rounds a number before any schema sees it (0.99999999999999999 arrives as 1): integers are judged as written.
const writtenAsNonInteger: Array<[string, string, string, string]> = [
  // [route, raw body, field named in the message, the number as written]
  ['PATCH /api/balance', '{"userId":1,"amount":0.99999999999999999}', 'body/amount', '0.99999999999999999'],
  ['PATCH /api/balance', '{"userId":1,"amount":9007199254740990.7}', 'body/amount', '9007199254740990.7'],
  ['PATCH /api/balance', '{"userId":1.0000000000000001,"amount":5}', 'body/userId', '1.0000000000000001'],
  ['PATCH /api/balance', '{"userId":1,"amount":1e2}', 'body/amount', '1e2'],
  ['PATCH /api/balance', '{"userId":1,"amount":-1E+2}', 'body/amount', '-1E+2'],
  ['PATCH /api/balance', '{"userId":1,"amount":-0.0}', 'body/amount', '-0.0'],
  ['PATCH /api/balance', '{"userId":1,"amount":2.0}', 'body/amount', '2.0'],
  ['POST /api/users', '{"balance":0.99999999999999999}', 'body/balance', '0.99999999999999999'],
  ['POST /api/users', '{"balance":1e2}', 'body/balance', '1e2'],
  ['POST /api/users', '{"balance":2.0}', 'body/balance', '2.0'],
  ['POST /api/transfers', '{"fromUserId":1.0,"toUserId":2,"amount":5}', 'body/fromUserId', '1.0'],
  ['POST /api/transfers', '{"fromUserId":1,"toUserId":2e0,"amount":5}', 'body/toUserId', '2e0'],
  ['POST /api/transfers', '{"fromUserId":1,"toUserId":2,"amount":0.99999999999999999}', 'body/amount', '0.99999999999999999'],
]

t.test('a number with a fraction or an exponent is a 400 naming it, never rounded into an integer; nothing is written', async (t) => {
  const { app } = await build(t)
  const second = await app.inject({ method: 'POST', url: '/api/users', payload: { balance: 10 } })
  t.equal(second.json().id, 2, 'a receiver for the transfers')
  const before = [await books(app, 1), await books(app, 2)]
  const usersBefore = (await sql<{ n: string }>(app, 'SELECT count(*) AS n FROM users'))[0]?.n
  for (const [route, payload, path, written] of writtenAsNonInteger) {
    const [method, url] = route.split(' ') as ['PATCH' | 'POST', string]
    const res = await app.inject({ method, url, payload, headers: JSON_TYPE })
    t.equal(res.statusCode, 400, `${route} ${payload}: status`)
    t.same(res.json(), {
      statusCode: 400,
      code: 'FST_ERR_VALIDATION',
      error: 'Bad Request',
      message: `${path} must be an integer written without a fraction or an exponent (got ${written})`,
    }, `${route} ${payload}: body`)
  }
  t.same([await books(app, 1), await books(app, 2)], before, 'no balance or journal entry changed')
  t.same(await sql(app, 'SELECT count(*) AS n FROM users'), [{ n: usersBefore }], 'no user was created')
})

t.test('exact integers pass the parser; strings that look like fractions are left alone', async (t) => {
  const { app } = await build(t)
  const max = await app.inject({ method: 'POST', url: '/api/users', payload: '{"balance":9007199254740991}', headers: JSON_TYPE })
  t.equal(max.statusCode, 201, 'MAX_SAFE_INTEGER as a balance')
  t.equal(max.json().balance, Number.MAX_SAFE_INTEGER)
  const take = await app.inject({ method: 'PATCH', url: '/api/balance', payload: `{"userId":${max.json().id as number},"amount":-9007199254740991}`, headers: JSON_TYPE })
  t.equal(take.statusCode, 200, '-MAX_SAFE_INTEGER as an amount')
  t.equal(take.json().balance, 0)
  const spaced = await app.inject({ method: 'PATCH', url: '/api/balance', payload: '{ "userId" : 1 , "amount" : -10 }', headers: JSON_TYPE })
  t.equal(spaced.json().balance, 9990, 'whitespace around integers')
  for (const payload of ['{"userId":1,"amount":5,"note":"1.5"}', '{"note":"a\\"1.5e3","userId":1,"amount":5}', '{"1.5":2.5e}']) {
    const res = await app.inject({ method: 'PATCH', url: '/api/balance', payload, headers: JSON_TYPE })
    t.equal(res.statusCode, 400, payload)
    t.notMatch(res.json().message, /fraction or an exponent/, `${payload}: not judged as a number (${res.json().message as string})`)
  }
  t.same(await books(app, 1), { balance: 9990, journalSum: 9990, entries: 2 }, 'only the valid change was applied')
})

t.test('path ids and query integers are digits: "1.0", "1e2", "0x1", "+1" are refused, not coerced', async (t) => {
  const { app } = await build(t)
  for (const url of ['/api/users/1.0', '/api/users/1e0', '/api/users/0x1', '/api/users/+1', '/api/users/%201', '/api/users/1.0/transactions']) {
    const res = await app.inject({ method: 'GET', url })
    t.equal(res.statusCode, 400, `GET ${url}`)
    t.same(res.json(), {
      statusCode: 400,
      code: 'FST_ERR_VALIDATION',
      error: 'Bad Request',
      message: 'params/id must be an integer written in digits, without a fraction or an exponent',
    }, `GET ${url}: body`)
  }
  for (const limit of ['1e2', '10.0', '0x10', ' 10']) {
    const res = await app.inject({ method: 'GET', url: `/api/users/1/transactions?limit=${encodeURIComponent(limit)}` })
    t.equal(res.statusCode, 400, `?limit=${limit}`)
    t.equal(res.json().message, 'querystring/limit must be an integer written in digits, without a fraction or an exponent')
  }
  t.equal((await app.inject('/api/users/1')).statusCode, 200, 'a plain id')
  t.equal((await app.inject('/api/users/1/transactions?limit=100')).statusCode, 200, 'a plain limit')
  t.equal((await app.inject('/api/users/-1')).json().message, 'params/id must be >= 1', 'a negative id keeps the range message')
})
