import t from 'tap'
import pg from 'pg'
import { books, sql } from '../helper.js'
import { haveSystemTools } from '../support/system-tool.js'
import { PGBOUNCER } from '../../src/tooling/pgbouncer.js'
import { behindPgBouncer } from '../support/behind-pgbouncer.js'

// The service behind a stock PgBouncer 1.18 in transaction mode (ignore_startup_parameters = extra_float_digits only):
// it starts, changes balances, and its timeouts still apply on the server connections PgBouncer hands it.

const TIMEOUT_MS = 1000
/** pg's client-side bound is TIMEOUT_MS + 2 s: an answer before it came from PostgreSQL's own timeout. */
const SERVER_TIMEOUT_BOUND_MS = TIMEOUT_MS + 1500

interface Answer { status: number, body: Record<string, unknown>, ms: number }

async function send (base: string, method: string, path: string, body: unknown, key?: string): Promise<Answer> {
  const started = performance.now()
  const response = await fetch(`${base}${path}`, {
    method,
    headers: { 'content-type': 'application/json', ...(key === undefined ? {} : { 'idempotency-key': key }) },
    body: JSON.stringify(body),
  })
  return { status: response.status, body: await response.json() as Record<string, unknown>, ms: performance.now() - started }
}

async function holder (url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url })
  client.on('error', () => {})
  await client.connect()
  // This session is of the service's role in its database: the role defaults written at boot apply to it too.
  await client.query('SET idle_in_transaction_session_timeout = 0; SET statement_timeout = 0; SET lock_timeout = 0')
  return client
}

t.test('behind PgBouncer (transaction mode): starts, changes, and a lock held elsewhere is a prompt 503', async (t) => {
  if (!haveSystemTools(t, [PGBOUNCER])) return
  const { db, apps, bases } = await behindPgBouncer(t, 'pgb_locks', { env: { DB_STATEMENT_TIMEOUT_MS: String(TIMEOUT_MS) } })
  const [app] = apps
  const [base] = bases

  const created = await send(base!, 'POST', '/api/users', { balance: 100 })
  t.equal(created.status, 201, 'a user created through PgBouncer')
  const other = created.body.id as number
  const first = await send(base!, 'PATCH', '/api/balance', { userId: 1, amount: -10 })
  t.same([first.status, first.body.balance], [200, 9990], 'a change through PgBouncer')
  // Many changes: with named statements on 1.18 these met "prepared statement … already exists / does not exist".
  const many = await Promise.all(Array.from({ length: 200 }, async (_, i) =>
    await send(base!, 'PATCH', '/api/balance', { userId: 1, amount: i % 2 === 0 ? 1 : -1 })))
  t.same(many.map((a) => a.status).filter((s) => s !== 200), [], '200 concurrent changes, all 200')

  const direct = await holder(db.url)
  t.teardown(async () => { await direct.end() })

  t.test('the user\'s advisory lock held by another session', async (t) => {
    await direct.query('SELECT pg_advisory_lock(1)')
    try {
      const answers = {
        keyless: await send(base!, 'PATCH', '/api/balance', { userId: 1, amount: 5 }),
        keyed: await send(base!, 'PATCH', '/api/balance', { userId: 1, amount: 5 }, 'lock-held-keyed'),
        transfer: await send(base!, 'POST', '/api/transfers', { fromUserId: other, toUserId: 1, amount: 5 }),
      }
      for (const [name, answer] of Object.entries(answers)) {
        t.same([answer.status, answer.body.code], [503, 'DB_UNAVAILABLE'], `${name}: 503 DB_UNAVAILABLE`)
        t.ok(answer.ms < SERVER_TIMEOUT_BOUND_MS, `${name}: answered by PostgreSQL's lock_timeout (${Math.round(answer.ms)} ms), not the client-side guard`)
      }
    } finally {
      await direct.query('SELECT pg_advisory_unlock(1)')
    }
  })

  t.test('the user\'s row locked by another transaction', async (t) => {
    await direct.query('BEGIN')
    await direct.query('SELECT id FROM users WHERE id = 1 FOR UPDATE')
    try {
      const answer = await send(base!, 'PATCH', '/api/balance', { userId: 1, amount: 5 })
      t.same([answer.status, answer.body.code], [503, 'DB_UNAVAILABLE'], 'keyless: 503 DB_UNAVAILABLE')
      t.ok(answer.ms < SERVER_TIMEOUT_BOUND_MS, `answered by lock_timeout (${Math.round(answer.ms)} ms)`)
    } finally {
      await direct.query('ROLLBACK')
    }
  })

  t.test('reads and other Sequelize work run under the role defaults', async (t) => {
    // The hot path sets its timeouts LOCAL per call; everything else runs under ALTER ROLE … IN DATABASE … SET,
    // written at boot (src/db/pooler.ts). Ask several pooled connections, i.e. several server connections.
    const seen = await Promise.all(Array.from({ length: 10 }, async () => await sql<{ s: string, l: string, i: string }>(app!,
      'SELECT current_setting(\'statement_timeout\') AS s, current_setting(\'lock_timeout\') AS l, current_setting(\'idle_in_transaction_session_timeout\') AS i')))
    t.same([...new Set(seen.map(([row]) => JSON.stringify(row)))], [JSON.stringify({ s: '1s', l: '1s', i: '1s' })], 'every server connection has the three timeouts')
  })

  t.test('after the locks are gone', async (t) => {
    const answer = await send(base!, 'PATCH', '/api/balance', { userId: 1, amount: 5 })
    t.same([answer.status, answer.body.balance], [200, 9995], 'the next change applies')
    // A statement the client gave up on but PostgreSQL kept waiting would have applied as soon as the lock was free.
    t.same(await books(app!, 1), { balance: 9995, journalSum: 9995, entries: 3 + 200 }, 'none of the 503s applied later')
    t.same(await books(app!, other), { balance: 100, journalSum: 100, entries: 1 }, 'the transfer did not apply')
  })
})
