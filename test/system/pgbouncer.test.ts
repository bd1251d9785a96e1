import t from 'tap'
import pg from 'pg'
import { books, sql } from '../helper.js'
import { haveSystemTools } from '../support/system-tool.js'
import { PGBOUNCER } from '../../src/tooling/pgbouncer.js'
import { behindPgBouncer } from '../support/behind-pgbouncer.js'

// The service behind a stock PgBouncer 1.18 in transaction mode (ignore_startup_parameters = extra_float_digits only):
// it starts, changes balances, its timeouts apply to every statement it sends (set LOCAL in the same round trip,
// whatever server connection PgBouncer hands it), and it leaves the settings of its role and of other sessions alone.

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
  return client
}

const TIMEOUTS_SQL = 'SELECT current_setting(\'statement_timeout\') AS s, current_setting(\'lock_timeout\') AS l, current_setting(\'idle_in_transaction_session_timeout\') AS i'

/** The three timeouts a new session of the service's role sees at `url`, with nothing of its own set. */
async function sessionTimeouts (url: string): Promise<Record<string, string>> {
  const client = new pg.Client({ connectionString: url })
  client.on('error', () => {})
  await client.connect()
  try {
    return { ...(await client.query(TIMEOUTS_SQL)).rows[0] }
  } finally {
    await client.end()
  }
}

t.test('behind PgBouncer (transaction mode): starts, changes, and a lock held elsewhere is a prompt 503', async (t) => {
  if (!haveSystemTools(t, [PGBOUNCER])) return
  const { db, bouncer, apps, bases } = await behindPgBouncer(t, 'pgb_locks', { env: { DB_STATEMENT_TIMEOUT_MS: String(TIMEOUT_MS) } })
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
  // The history's values (user, cursor, limit) travel inlined as literals behind the pooler: two pages, keyset-exact.
  const page1 = await send(base!, 'GET', '/api/users/1/transactions?limit=150', undefined)
  const page2 = await send(base!, 'GET', `/api/users/1/transactions?limit=150&before=${String(page1.body.nextCursor)}`, undefined)
  const ids = [...(page1.body.items as Array<{ id: number }>), ...(page2.body.items as Array<{ id: number }>)].map((item) => item.id)
  t.same([page1.status, page2.status, ids.length, new Set(ids).size, page2.body.nextCursor], [200, 200, 202, 202, null], 'the whole history in two pages through PgBouncer: 202 entries, none twice')

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

  t.test('the users table locked by another transaction: reads and user creation answer 503 at the timeout', async (t) => {
    await direct.query('BEGIN')
    await direct.query('LOCK TABLE users IN ACCESS EXCLUSIVE MODE')
    try {
      const answers = {
        'GET /api/users/1': await send(base!, 'GET', '/api/users/1', undefined),
        'GET /api/users/1/transactions': await send(base!, 'GET', '/api/users/1/transactions', undefined),
        'POST /api/users': await send(base!, 'POST', '/api/users', { balance: 7 }),
        'POST /api/users (keyed)': await send(base!, 'POST', '/api/users', { balance: 7 }, 'locked-create'),
      }
      for (const [name, answer] of Object.entries(answers)) {
        t.same([answer.status, answer.body.code], [503, 'DB_UNAVAILABLE'], `${name}: 503 DB_UNAVAILABLE`)
        t.ok(answer.ms < SERVER_TIMEOUT_BOUND_MS, `${name}: answered by PostgreSQL's own timeout (${Math.round(answer.ms)} ms), not the client-side guard`)
      }
    } finally {
      await direct.query('ROLLBACK')
    }
    const [users] = await sql<{ n: number }>(app!, 'SELECT count(*)::int AS n FROM users')
    t.equal(users!.n, 2, 'no user was created after the lock was gone (user 1 and the one created above)')
  })

  t.test('the role\'s settings and other sessions of the role are left alone', async (t) => {
    const [settings] = await sql<{ n: number }>(app!, `SELECT count(*)::int AS n FROM pg_db_role_setting
      WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())`)
    t.equal(settings!.n, 0, 'no per-role or per-database defaults in pg_db_role_setting for this database')
    const untouched = { s: '0', l: '0', i: '0' }
    t.same(await sessionTimeouts(db.url), untouched, 'a new session of the same role, straight to PostgreSQL: no timeouts')
    // Through PgBouncer a client gets one of the server connections the service used: LOCAL settings left nothing there.
    const throughPooler = await Promise.all(Array.from({ length: 5 }, async () => await sessionTimeouts(bouncer.via(db.url))))
    t.same(throughPooler, Array.from({ length: 5 }, () => untouched), 'sessions through PgBouncer on the service\'s server connections: no timeouts')
  })

  t.test('after the locks are gone', async (t) => {
    const answer = await send(base!, 'PATCH', '/api/balance', { userId: 1, amount: 5 })
    t.same([answer.status, answer.body.balance], [200, 9995], 'the next change applies')
    // A statement the client gave up on but PostgreSQL kept waiting would have applied as soon as the lock was free.
    t.same(await books(app!, 1), { balance: 9995, journalSum: 9995, entries: 3 + 200 }, 'none of the 503s applied later')
    t.same(await books(app!, other), { balance: 100, journalSum: 100, entries: 1 }, 'the transfer did not apply')
  })
})
