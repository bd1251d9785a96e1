import t from 'tap'
import { build, books } from './helper.js'

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
  ['amount float', { userId: 1, amount: 1.5 }],
  ['amount null', { userId: 1, amount: null }],
  ['amount boolean', { userId: 1, amount: true }],
  ['amount array', { userId: 1, amount: [5] }],
  ['amount object', { userId: 1, amount: { value: 5 } }],
  ['amount above 2^53-1', { userId: 1, amount: 9007199254740992 }],
  ['amount below -(2^53-1)', { userId: 1, amount: -9007199254740992 }],
  ['amount 1e300', { userId: 1, amount: 1e300 }],
  ['userId zero', { userId: 0, amount: 5 }],
  ['userId negative', { userId: -1, amount: 5 }],
  ['userId string', { userId: '1', amount: 5 }],
  ['userId float', { userId: 1.5, amount: 5 }],
  ['userId above 2^53-1', { userId: 9007199254740992, amount: 5 }],
  ['body is an array', [{ userId: 1, amount: 5 }]],
  ['body is a number', 5],
  ['body is a string', 'hello'],
  ['body is null', null],
]

const cases: Case[] = [
  ...bodies.map(([name, body]) => ({ name, payload: JSON.stringify(body), status: 400, code: 'FST_ERR_VALIDATION' })),
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
