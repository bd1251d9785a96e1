// The HTTP floor: the service's HTTP stack (Fastify 5, the same limits, JSON body validation, the same reply shapes)
// with an in-memory balance instead of PostgreSQL. Whatever the real service costs above this is database and ORM.
// Plain JavaScript, started by bench/run as a child process: node bench/floor-server.mjs (PORT, HOST from env).
// It imports the built limits (dist/src/limits.js) so the floor listens exactly like the service.
import Fastify from 'fastify'
import { limits } from '../dist/src/limits.js'

const port = Number(process.env.PORT ?? 3999)
const host = process.env.HOST ?? '127.0.0.1'
const level = process.env.LOG_LEVEL ?? 'warn'

const app = Fastify({
  logger: level === 'silent' ? false : { level },
  bodyLimit: limits.bodyLimitBytes,
  requestTimeout: limits.requestTimeoutMs,
  keepAliveTimeout: limits.keepAliveTimeoutMs,
  http: { maxHeaderSize: limits.maxHeaderBytes },
  forceCloseConnections: 'idle',
  return503OnClosing: true,
  disableRequestLogging: true,
})

/** In-memory balances: user 1 holds 10000 like the seeded service; any other user a balance that never runs out. */
const balances = new Map([[1, 10000]])
const BOTTOMLESS = 1e12
let entryId = 0

const changeBody = {
  type: 'object',
  additionalProperties: false,
  required: ['userId', 'amount'],
  properties: {
    userId: { type: 'integer', minimum: 1, maximum: Number.MAX_SAFE_INTEGER },
    amount: { type: 'integer', minimum: -Number.MAX_SAFE_INTEGER, maximum: Number.MAX_SAFE_INTEGER, not: { const: 0 } },
  },
}

app.get('/api/health', async () => ({ status: 'ok', db: 'none' }))

// Idempotency-Key, in memory: a key seen before gets the first answer again (with Idempotent-Replayed: true), as the
// service answers a retry, so balance-api/client's retries apply a change once here too. Bounded: the oldest key goes
// when MAX_KEYS are held; /bench/reset forgets them all.
const MAX_KEYS = 100_000
const answers = new Map()

function remember (key, status, body) {
  if (key === undefined) return
  if (answers.size >= MAX_KEYS) answers.delete(answers.keys().next().value)
  answers.set(key, { status, body })
}

// bench/waiting-memory.ts --floor: requests whose key starts with FLOOR_PARK_KEY_PREFIX wait FLOOR_PARK_MS (from the
// first of them) before they are answered, so a heap snapshot sees what Node and Fastify keep for a waiting request.
const parkPrefix = process.env.FLOOR_PARK_KEY_PREFIX
const parkMs = Number(process.env.FLOOR_PARK_MS ?? 0)
let parked

app.patch('/api/balance', { schema: { body: changeBody } }, async (request, reply) => {
  const key = request.headers['idempotency-key']
  if (parkPrefix !== undefined && key?.startsWith(parkPrefix) === true) {
    parked ??= new Promise((resolve) => setTimeout(resolve, parkMs))
    await parked
  }
  const seen = key === undefined ? undefined : answers.get(key)
  if (seen !== undefined) return await reply.code(seen.status).header('idempotent-replayed', 'true').send(seen.body)
  const { userId, amount } = request.body
  const balance = balances.get(userId) ?? BOTTOMLESS
  if (balance + amount < 0) {
    const body = {
      statusCode: 409, code: 'INSUFFICIENT_FUNDS', error: 'Conflict',
      message: `Insufficient funds: user ${userId} has ${balance}, the change is ${amount}`, userId, balance,
    }
    remember(key, 409, body)
    return await reply.code(409).send(body)
  }
  balances.set(userId, balance + amount)
  entryId += 1
  const body = { userId, balance: balance + amount, amount, entryId }
  remember(key, 200, body)
  return body
})

// A hold, in memory: the same check (available = balance − held) and a reply of the service's shape, so the hold
// burst has a floor of its own (the holds scenario of bench/run.ts).
const held = new Map()
let holdId = 0
const holdBody = {
  type: 'object',
  additionalProperties: false,
  required: ['userId', 'amount'],
  properties: {
    userId: { type: 'integer', minimum: 1, maximum: Number.MAX_SAFE_INTEGER },
    amount: { type: 'integer', minimum: 1, maximum: Number.MAX_SAFE_INTEGER },
    expiresInSeconds: { type: 'integer', minimum: 1, maximum: 2592000 },
  },
}

app.post('/api/holds', { schema: { body: holdBody } }, async (request, reply) => {
  const { userId, amount, expiresInSeconds = 3600 } = request.body
  const balance = balances.get(userId) ?? BOTTOMLESS
  const onHold = held.get(userId) ?? 0
  if (balance - onHold < amount) {
    return await reply.code(409).send({
      statusCode: 409, code: 'INSUFFICIENT_FUNDS', error: 'Conflict',
      message: `Insufficient funds: user ${userId} has ${balance}, the change is ${-amount}`, userId, balance, available: balance - onHold,
    })
  }
  held.set(userId, onHold + amount)
  holdId += 1
  const now = new Date()
  return await reply.code(201).send({
    holdId, userId, amount, status: 'active', captured: 0, released: 0, expiresAt: new Date(now.getTime() + expiresInSeconds * 1000).toISOString(),
    createdAt: now.toISOString(), settledAt: null, toUserId: null, metadata: null,
    balance, held: onHold + amount, available: balance - onHold - amount, entryId: null, payee: null,
  })
})

// Bench control: put a user's balance back before the next burst repetition.
app.post('/bench/reset', async (request) => {
  const { userId, balance } = request.body
  balances.set(userId, balance)
  held.delete(userId)
  answers.clear()
  return { userId, balance }
})

app.server.maxConnections = limits.maxConnections
await app.listen({ port, host, backlog: limits.listenBacklog })

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.once(signal, () => { app.close().then(() => process.exit(0), () => process.exit(1)) })
}
