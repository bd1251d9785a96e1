import { chmod, mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import pg from 'pg'
import t from 'tap'
import { buildApp } from '../../src/app.js'
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../../src/db/embedded-postgres.js'
import { createThrowawayDatabase } from '../../src/tooling/throwaway-database.js'
import { build, listen, strategies, testConfig } from '../helper.js'
import { checkChanges, runLoad, send, sleep, waitFor, type Tally } from '../support/load.js'

/**
 * Fault injection against the real service and a real PostgreSQL: connections killed under load,
 * PostgreSQL stopped and started mid-load, lock and statement timeouts. Through all of it every answer is the real
 * outcome or 503 DB_UNAVAILABLE (never a 500, never a hang: every client request has a timeout), the service recovers
 * by itself, every 200 has exactly one journal entry, and the books balance. Bounded in time and count; loopback only.
 */
interface Change { userId: number, amount: number }

const CLIENT_TIMEOUT_MS = 30_000

// One database held for the whole file keeps the throwaway server (embedded when DATABASE_URL is unset) up between
// tests, instead of a new cluster per test.
const keeper = await createThrowawayDatabase('faults-keeper')
t.teardown(keeper.drop)

function acknowledgedChanges (tally: Tally<Change>): Array<{ userId: number, amount: number, entryId: number }> {
  return tally.acknowledged.map(({ request, reply }) => ({ ...request, entryId: reply.body.entryId as number }))
}

async function connect (url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, application_name: 'fault-injector' })
  await client.connect()
  return client
}

for (const strategy of strategies) {
  t.test(`${strategy}: pg_terminate_backend on the service's connections, repeatedly, during a burst of changes`, async (t) => {
    const { app, db } = await build(t, { strategy, env: { DB_CONNECT_TIMEOUT_MS: '2000', DB_ACQUIRE_TIMEOUT_MS: '5000' } })
    const base = await listen(app)
    const admin = await connect(db.url)
    t.teardown(async () => { await admin.end() })
    const entriesBefore = Number((await admin.query<{ n: string }>('SELECT count(*) AS n FROM journal_entries')).rows[0]?.n)

    let loadDone = false
    let terminated = 0
    let rounds = 0
    let acknowledged = 0
    // 25 rounds, one every 80 ms, each terminating every backend the service has open on this database; more rounds
    // (at most 100) until 10 changes were acknowledged under fire. With group commit one user's changes go one
    // statement at a time, and each kill fails a whole batch: on a loaded box 25 rounds were seen to end with none.
    const underFire = (): boolean => (rounds < 25 || acknowledged < 10) && rounds < 100
    const killer = (async () => {
      for (; underFire() && !loadDone; rounds += 1) {
        await sleep(80)
        const killed = await admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = current_database() AND application_name = 'balance-api' AND pid <> pg_backend_pid()`)
        terminated += killed.rowCount ?? 0
      }
    })()
    const tally = await runLoad<Change>({
      workers: 16,
      maxRequests: 5000,
      stop: () => !underFire(),
      // Mostly small withdrawals, some deposits, and some refused withdrawals that must change nothing.
      next: (index) => ({ userId: 1, amount: index % 10 === 0 ? 5 : index % 10 === 1 ? -1_000_000 : -1 }),
      perform: async (change) => {
        const outcome = await send(base, 'PATCH', '/api/balance', change, {}, CLIENT_TIMEOUT_MS)
        if (outcome.ok && outcome.reply.status === 200) acknowledged += 1
        return outcome
      },
      label: (change) => `PATCH ${JSON.stringify(change)}`,
    })
    loadDone = true
    await killer

    t.same(tally.violations, [], `no 500, no hang, no connection error (statuses ${JSON.stringify(tally.statuses)})`)
    t.ok(terminated >= 5, `${terminated} backends terminated in ${rounds} rounds`)
    t.ok(tally.acknowledged.length > 0, `${tally.acknowledged.length} changes acknowledged under fire`)
    t.ok(tally.refused.every(({ reply }) => reply.status === 409 && reply.body.code === 'INSUFFICIENT_FUNDS'), 'refusals are 409 INSUFFICIENT_FUNDS')
    t.ok(tally.unavailable.length > 0, `${tally.unavailable.length} ambiguous 503s counted apart`)

    // It recovers by itself: a change succeeds again, without a restart.
    const recovered = await waitFor(async () => {
      const outcome = await send(base, 'PATCH', '/api/balance', { userId: 1, amount: 1 }, {}, CLIENT_TIMEOUT_MS)
      if (outcome.ok && outcome.reply.status === 200) {
        tally.acknowledged.push({ request: { userId: 1, amount: 1 }, reply: outcome.reply })
        return true
      }
      return false
    }, 10_000)
    t.ok(recovered >= 0, `a change succeeds again after ${recovered} ms`)
    t.same(await checkChanges(admin, acknowledgedChanges(tally), tally.unavailable.length, entriesBefore), [], 'every 200 has exactly one journal entry; refusals none')
  })
}

t.test('PostgreSQL stopped and started again (same data, same port) mid-load', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'balance-restart-'))
  await chmod(dir, 0o755) // as root, PostgreSQL runs as 'postgres' and must enter this folder
  const dataDir = path.join(dir, 'pg')
  let server: EmbeddedPostgres | undefined = await startEmbeddedPostgres({ dataDir, database: 'balance' })
  const { port, url } = server
  t.teardown(async () => {
    await server?.stop()
    await rm(dir, { recursive: true, force: true })
  })
  const app = await buildApp(testConfig(url, 'advisory', { DB_CONNECT_TIMEOUT_MS: '1000', DB_ACQUIRE_TIMEOUT_MS: '3000' }))
  t.teardown(async () => { await app.close() })
  const base = await listen(app)

  let phase: 'up' | 'down' | 'back' = 'up'
  let stopLoad = false
  const downAnswers: number[] = []
  const load = runLoad<Change>({
    workers: 8,
    maxRequests: 20_000,
    stop: () => stopLoad,
    next: (index) => ({ userId: 1, amount: index % 7 === 0 ? 3 : -1 }),
    perform: async (change) => {
      const outcome = await send(base, 'PATCH', '/api/balance', change, {}, CLIENT_TIMEOUT_MS)
      if (phase === 'down' && outcome.ok) downAnswers.push(outcome.reply.ms)
      // While PostgreSQL is down every answer is an immediate 503: do not spin.
      if (outcome.ok && outcome.reply.status === 503) await sleep(20)
      return outcome
    },
    label: (change) => `PATCH ${JSON.stringify(change)}`,
  })

  await sleep(1500)
  await server.stop()
  server = undefined
  phase = 'down'
  await sleep(1500)
  const health = await send(base, 'GET', '/api/health')
  t.match(health, { ok: true, reply: { status: 503, body: { status: 'error', db: 'down' } } }, 'health says the database is down')
  server = await startEmbeddedPostgres({ dataDir, database: 'balance', port })
  t.equal(server.port, port, 'started again on the same port')
  phase = 'back'
  const recovered = await waitFor(async () => {
    const outcome = await send(base, 'GET', '/api/health')
    return outcome.ok && outcome.reply.status === 200
  }, 20_000)
  t.ok(recovered >= 0, `health is 200 again ${recovered} ms after the restart`)
  await sleep(1000)
  stopLoad = true
  const tally = await load

  t.same(tally.violations, [], `no 500, no hang, no connection error (statuses ${JSON.stringify(tally.statuses)})`)
  t.ok(tally.unavailable.length > 0, `${tally.unavailable.length} × 503 DB_UNAVAILABLE while it was down`)
  t.ok(downAnswers.length > 0 && Math.max(...downAnswers) < 5000, `answers while down came within 5 s (max ${Math.round(Math.max(0, ...downAnswers))} ms)`)
  const lateSuccess = await send(base, 'PATCH', '/api/balance', { userId: 1, amount: -1 })
  t.match(lateSuccess, { ok: true, reply: { status: 200 } }, 'changes succeed again without restarting the service')
  if (lateSuccess.ok) tally.acknowledged.push({ request: { userId: 1, amount: -1 }, reply: lateSuccess.reply })

  const client = await connect(url)
  t.teardown(async () => { await client.end() })
  t.same(await checkChanges(client, acknowledgedChanges(tally), tally.unavailable.length, 1), [], 'every 200 has exactly one journal entry; the books balance')
})

for (const strategy of strategies) {
  t.test(`${strategy}: a lock held past DB_STATEMENT_TIMEOUT_MS gives a prompt 503, changes nothing, and clears`, async (t) => {
    const { app, db } = await build(t, { strategy, env: { DB_STATEMENT_TIMEOUT_MS: '300' } })
    const base = await listen(app)
    const holder = await connect(db.url)
    t.teardown(async () => { await holder.end() })
    const before = (await holder.query('SELECT balance, (SELECT count(*) FROM journal_entries) AS entries FROM users WHERE id = 1')).rows[0]

    // What each strategy waits on: the user's advisory lock (advisory) or its row lock (atomic, row-lock).
    await holder.query('BEGIN')
    await holder.query('SELECT pg_advisory_xact_lock(1)')
    await holder.query('SELECT 1 FROM users WHERE id = 1 FOR UPDATE')
    const blocked = await Promise.all([1, 2, 3].map(async () => await send(base, 'PATCH', '/api/balance', { userId: 1, amount: -1 }, {}, CLIENT_TIMEOUT_MS)))
    for (const outcome of blocked) {
      t.match(outcome, { ok: true, reply: { status: 503, body: { code: 'DB_UNAVAILABLE', statusCode: 503 } } }, 'blocked change: 503 DB_UNAVAILABLE')
      t.ok(outcome.ms < 3000, `answered in ${Math.round(outcome.ms)} ms (timeout 300 ms)`)
    }
    const read = await send(base, 'GET', '/api/users/1')
    t.match(read, { ok: true, reply: { status: 200, body: { balance: Number(before.balance) } } }, 'reads do not wait for the lock')
    // A statement that waits on a whole-table lock hits the same bound.
    await holder.query('LOCK TABLE users IN ACCESS EXCLUSIVE MODE')
    const lockedRead = await send(base, 'GET', '/api/users/1', undefined, {}, CLIENT_TIMEOUT_MS)
    t.match(lockedRead, { ok: true, reply: { status: 503, body: { code: 'DB_UNAVAILABLE' } } }, 'a read behind a table lock: 503')
    t.ok(lockedRead.ms < 3000, `answered in ${Math.round(lockedRead.ms)} ms`)
    await holder.query('ROLLBACK')

    const after = (await holder.query('SELECT balance, (SELECT count(*) FROM journal_entries) AS entries FROM users WHERE id = 1')).rows[0]
    t.same(after, before, 'nothing changed')
    const served = await send(base, 'PATCH', '/api/balance', { userId: 1, amount: -1 })
    t.match(served, { ok: true, reply: { status: 200, body: { balance: Number(before.balance) - 1 } } }, 'served normally once the lock is released')
  })
}

t.test('a statement running past DB_STATEMENT_TIMEOUT_MS is cancelled: 503, then normal service', async (t) => {
  const { app, db } = await build(t, { env: { DB_STATEMENT_TIMEOUT_MS: '300' } })
  const base = await listen(app)
  const holder = await connect(db.url)
  t.teardown(async () => { await holder.end() })
  // A trigger that makes every journal insert slow: the change's statement itself runs past statement_timeout.
  await holder.query(`CREATE FUNCTION slow_journal() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(2); RETURN NEW; END $$;
    CREATE TRIGGER slow_journal BEFORE INSERT ON journal_entries FOR EACH ROW EXECUTE FUNCTION slow_journal()`)
  const slow = await send(base, 'PATCH', '/api/balance', { userId: 1, amount: -1 }, {}, CLIENT_TIMEOUT_MS)
  t.match(slow, { ok: true, reply: { status: 503, body: { code: 'DB_UNAVAILABLE' } } }, 'statement timeout: 503 DB_UNAVAILABLE')
  t.ok(slow.ms < 3000, `answered in ${Math.round(slow.ms)} ms`)
  await holder.query('DROP TRIGGER slow_journal ON journal_entries; DROP FUNCTION slow_journal()')
  const rows = (await holder.query('SELECT balance, (SELECT count(*) FROM journal_entries)::int AS entries FROM users WHERE id = 1')).rows[0]
  t.same({ balance: Number(rows.balance), entries: rows.entries }, { balance: 10000, entries: 1 }, 'the cancelled change left nothing behind')
  const served = await send(base, 'PATCH', '/api/balance', { userId: 1, amount: -1 })
  t.match(served, { ok: true, reply: { status: 200, body: { balance: 9999 } } }, 'served normally afterwards')
})
