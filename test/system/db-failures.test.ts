import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import t, { type Test } from 'tap'
import pg from 'pg'
import { buildApp } from '../../src/app.js'
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../../src/db/embedded-postgres.js'
import { books, testConfig } from '../helper.js'
import { haveSystemTools } from '../support/system-tool.js'
import { PGBOUNCER, startPgBouncer } from '../../src/tooling/pgbouncer.js'
import { behindPgBouncer, send, type Answer } from '../support/behind-pgbouncer.js'

// Every database failure is a 503 DB_UNAVAILABLE, never a 500, with real parts: a PostgreSQL cluster of this test's
// own (initdb in a temporary folder, a free loopback port: the embedded binaries, on both CI paths) whose server-wide
// settings the test may change, and a real PgBouncer whose connections the test cuts.

async function admin (url: string, ...statements: string[]): Promise<Array<Record<string, unknown>>> {
  const client = new pg.Client({ connectionString: url })
  client.on('error', () => {})
  await client.connect()
  try {
    let rows: Array<Record<string, unknown>> = []
    for (const statement of statements) rows = (await client.query(statement)).rows
    return rows
  } finally {
    await client.end()
  }
}

async function until (what: string, check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!await check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/** A cluster of this file's own (one initdb for both tests that need one): ALTER SYSTEM on it touches nobody else. */
let cluster: Promise<EmbeddedPostgres> | undefined
async function ownCluster (): Promise<EmbeddedPostgres> {
  cluster ??= (async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'balance-failures-'))
    const started = await startEmbeddedPostgres({ dataDir, database: 'balance' })
    t.teardown(async () => { await started.stop(); await rm(dataDir, { recursive: true, force: true }) })
    return started
  })()
  return await cluster
}

async function serviceOn (t: Test, url: string, env: Record<string, string> = {}): Promise<{ app: Awaited<ReturnType<typeof buildApp>>, base: string }> {
  const app = await buildApp(testConfig(url, 'advisory', env))
  t.teardown(async () => { await app.close() })
  return { app, base: await app.listen({ port: 0, host: '127.0.0.1' }) }
}

async function readOnlyIs (adminUrl: string, value: 'on' | 'off'): Promise<void> {
  await until(`default_transaction_read_only = ${value}`, async () =>
    (await admin(adminUrl, 'SHOW default_transaction_read_only'))[0]!.default_transaction_read_only === value)
}

/** The service's backends waiting for a synchronous standby to confirm their commit. */
async function syncRepWaiters (adminUrl: string): Promise<number[]> {
  const rows = await admin(adminUrl, 'SELECT pid FROM pg_stat_activity WHERE wait_event = \'SyncRep\' AND application_name = \'balance-api\'')
  return rows.map((row) => Number(row.pid))
}

t.test('a commit the synchronous standby never confirmed is a 503; a retry with the key learns it committed', async (t) => {
  const cluster = await ownCluster()
  // A client-side guard (query_timeout = timeout + 2 s) far away: a 503 here can only come from the cancelled wait.
  const { app, base } = await serviceOn(t, cluster.url, { DB_STATEMENT_TIMEOUT_MS: '60000' })
  // And an instance whose guard fires soon, for the read timeout.
  const { base: impatient } = await serviceOn(t, cluster.url, { DB_STATEMENT_TIMEOUT_MS: '1000' })
  t.same((await send(base, 'PATCH', '/api/balance', { userId: 1, amount: -1 }, 'sync-0')).status, 200, 'a change before')

  // A standby that does not exist: every commit waits for it (strict synchronous replication with the standby gone).
  await admin(cluster.adminUrl, 'ALTER SYSTEM SET synchronous_standby_names = \'standby_that_does_not_exist\'', 'SELECT pg_reload_conf()')
  await new Promise((resolve) => setTimeout(resolve, 500)) // the checkpointer publishes the new setting

  t.test('the wait cancelled (pg_cancel_backend): committed locally, not confirmed → 503', async (t) => {
    const pending = send(base, 'PATCH', '/api/balance', { userId: 1, amount: -10 }, 'sync-cancelled')
    let waiting: number[] = []
    await until('a commit waiting for the standby', async () => (waiting = await syncRepWaiters(cluster.adminUrl)).length === 1)
    await admin(cluster.adminUrl, `SELECT pg_cancel_backend(${waiting[0]!})`)
    const answer = await pending
    t.same([answer.status, answer.body.code], [503, 'DB_UNAVAILABLE'], 'answered 503 DB_UNAVAILABLE, not 200 and not 500')
    t.same(await books(app, 1), { balance: 9989, journalSum: 9989, entries: 3 }, 'yet the change is committed on the primary')
  })

  t.test('no answer within the client-side guard ("Query read timeout") → 503', async (t) => {
    // statement_timeout does not cover the wait at commit; pg's query_timeout (timeout + 2 s) does.
    const answer = await send(impatient, 'PATCH', '/api/balance', { userId: 1, amount: -5 })
    t.same([answer.status, answer.body.code], [503, 'DB_UNAVAILABLE'], 'answered 503 DB_UNAVAILABLE, not 500')
    const waiting = await syncRepWaiters(cluster.adminUrl)
    t.equal(waiting.length, 1, 'PostgreSQL is still waiting at commit: its statement_timeout (1 s) did not end the wait')
    for (const pid of waiting) await admin(cluster.adminUrl, `SELECT pg_cancel_backend(${pid})`)
  })

  t.test('the standby back: the retry with the same key replays the committed outcome', async (t) => {
    await admin(cluster.adminUrl, 'ALTER SYSTEM RESET synchronous_standby_names', 'SELECT pg_reload_conf()')
    await new Promise((resolve) => setTimeout(resolve, 500))
    let retry: Answer | undefined
    // The pool may first hand out a connection the guard gave up on (closed after the read timeout): retry on 503.
    for (let attempt = 0; attempt < 5 && (retry === undefined || retry.status === 503); attempt += 1) {
      retry = await send(base, 'PATCH', '/api/balance', { userId: 1, amount: -10 }, 'sync-cancelled')
    }
    t.same([retry!.status, retry!.body.balance, retry!.replayed], [200, 9989, true], 'the retry replays: the change happened once')
    t.same(await books(app, 1), { balance: 9984, journalSum: 9984, entries: 4 }, 'the read-timed-out change committed too (a retry would learn it with a key); nothing twice')
  })
})

t.test('a server answering read-only (25006, as a demoted primary or a standby would) is a 503', async (t) => {
  const cluster = await ownCluster()
  // Whatever the test before left (it resets what it sets, unless it failed half-way).
  await admin(cluster.adminUrl, 'ALTER SYSTEM RESET ALL', 'SELECT pg_reload_conf()', 'CREATE DATABASE balance_read_only')
  const { app, base } = await serviceOn(t, cluster.url.replace(/\/balance$/, '/balance_read_only'))
  t.same((await send(base, 'PATCH', '/api/balance', { userId: 1, amount: -1 })).status, 200, 'a change before')
  await admin(cluster.adminUrl, 'ALTER SYSTEM SET default_transaction_read_only = on', 'SELECT pg_reload_conf()')
  // pg_reload_conf() only signals the postmaster; once a new session sees the setting, the postmaster has re-read the
  // file and signalled every backend, and each pooled backend applies it before its next command.
  await readOnlyIs(cluster.adminUrl, 'on')
  const answers = await Promise.all(Array.from({ length: 20 }, async (_, i) => await send(base, 'PATCH', '/api/balance', { userId: 1, amount: -1 }, i % 2 === 0 ? `ro-${i}` : undefined)))
  t.same([...new Set(answers.map((a) => `${a.status} ${String(a.body.code)}`))], ['503 DB_UNAVAILABLE'], 'keyed and keyless writes: 503 DB_UNAVAILABLE')
  await admin(cluster.adminUrl, 'ALTER SYSTEM RESET default_transaction_read_only', 'SELECT pg_reload_conf()')
  await readOnlyIs(cluster.adminUrl, 'off')
  t.same((await send(base, 'PATCH', '/api/balance', { userId: 1, amount: -1 }, 'ro-0')).status, 200, 'writable again: the same key runs (the 503 kept it free)')
  t.same(await books(app, 1), { balance: 9998, journalSum: 9998, entries: 3 }, 'only the two changes that answered 200')
})

t.test('connections cut by PgBouncer are 503s, and the service recovers by itself', async (t) => {
  if (!haveSystemTools(t, [PGBOUNCER])) return
  // server_login_retry (15 s by default): after KILL, PgBouncer waits this long before it opens server connections again.
  const { db, bouncer: first, apps, bases } = await behindPgBouncer(t, 'pgb_cuts', {
    env: { DB_STATEMENT_TIMEOUT_MS: '30000' },
    bouncer: { settings: { server_login_retry: '1' } },
  })
  const app = apps[0]!
  const base = bases[0]!
  let bouncer = first
  t.teardown(async () => { await bouncer.stop() })
  const holder = new pg.Client({ connectionString: db.url })
  holder.on('error', () => {})
  await holder.connect()
  t.teardown(async () => { await holder.end() })
  const change = async (key?: string): Promise<Answer> => await send(base, 'PATCH', '/api/balance', { userId: 1, amount: -1 }, key)
  const recovered = async (): Promise<void> => {
    await until('the service reaching the database again', async () => (await fetch(`${base}/api/users/1`)).status === 200, 20_000)
  }

  t.test('KILL on the admin console while requests wait on a lock', async (t) => {
    // Two users, so that the two requests wait in PostgreSQL side by side (group commit would put two changes to
    // one user into one transaction).
    const other = (await send(base, 'POST', '/api/users', { balance: 100 })).body.id as number
    const before = await books(app, 1)
    await holder.query(`SELECT pg_advisory_lock(1), pg_advisory_lock(${other})`)
    try {
      const pending = Promise.all([change(), send(base, 'PATCH', '/api/balance', { userId: other, amount: -1 }, 'kill-keyed')])
      await until('two requests waiting on the locks', async () => (await admin(db.url, 'SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = \'Lock\' AND application_name = \'balance-api\''))[0]!.n === 2)
      await bouncer.admin(`KILL ${db.name}`)
      const answers = await pending
      t.same(answers.map((a) => `${a.status} ${String(a.body.code)}`), ['503 DB_UNAVAILABLE', '503 DB_UNAVAILABLE'], 'both cut requests: 503 DB_UNAVAILABLE')
    } finally {
      await holder.query('SELECT pg_advisory_unlock_all()')
      await bouncer.admin(`RESUME ${db.name}`).catch(() => {})
    }
    const started = performance.now()
    await recovered()
    t.comment(`recovered ${Math.round(performance.now() - started)} ms after RESUME (server_login_retry = 1 s)`)
    // PgBouncer closed the server connections, but a backend waiting on a lock does not notice its client is gone
    // (client_connection_check_interval is 0 by default): once the locks were free, both cut changes ran and committed.
    // A 503 means "outcome unknown"; the keyed retry learns it committed, and nothing applies twice.
    const retry = await send(base, 'PATCH', '/api/balance', { userId: other, amount: -1 }, 'kill-keyed')
    t.same([retry.status, retry.body.balance, retry.replayed], [200, 99, true], 'the cut keyed change committed after the cut: its retry replays it')
    const next = await change()
    t.same([next.status, next.body.balance], [200, before.balance - 2], 'recovered after RESUME without a restart: the next change applies')
    t.same(await books(app, 1), { balance: before.balance - 2, journalSum: before.balance - 2, entries: before.entries + 2 }, 'user 1: the cut change and the next one, each once')
    t.same(await books(app, other), { balance: 99, journalSum: 99, entries: 2 }, 'the other user: the keyed change once')
  })

  t.test('RECONNECT on the admin console is invisible to clients', async (t) => {
    const during = Promise.all(Array.from({ length: 200 }, async () => await change()))
    await bouncer.admin(`RECONNECT ${db.name}`)
    const answers = await during
    t.same([...new Set(answers.map((a) => a.status))], [200], 'every change during RECONNECT: 200')
  })

  t.test('PgBouncer killed (SIGKILL) under load, then started again on its port', async (t) => {
    const port = bouncer.port
    const before = await books(app, 1)
    const load = Promise.all(Array.from({ length: 100 }, async (_, i) => await change(`killed-${i}`)))
    await new Promise((resolve) => setTimeout(resolve, 20))
    await bouncer.kill()
    const answers = await load
    const statuses = [...new Set(answers.map((a) => `${a.status} ${a.status === 200 ? '' : String(a.body.code)}`.trim()))].sort()
    t.ok(statuses.every((s) => s === '200' || s === '503 DB_UNAVAILABLE'), `only 200 or 503 DB_UNAVAILABLE (${statuses.join(', ')})`)
    t.ok(answers.some((a) => a.status === 503), 'some were cut')
    const target = new URL(db.url)
    bouncer = await startPgBouncer({ host: target.hostname, port: Number(target.port), listenPort: port })
    await recovered()
    // Retries with the same keys converge: each key exactly once, whatever its first answer was.
    const retries = await Promise.all(answers.map(async (_, i) => await change(`killed-${i}`)))
    t.same([...new Set(retries.map((a) => a.status))], [200], 'every keyed retry: 200 (a replay, or the first run)')
    t.same(await books(app, 1), { balance: before.balance - 100, journalSum: before.balance - 100, entries: before.entries + 100 }, 'each of the 100 keys applied exactly once')
  })

  t.test('the books after all the cuts', async (t) => {
    const after = await books(app, 1)
    t.equal(after.balance, after.journalSum, 'balance = Σ journal')
  })
})
