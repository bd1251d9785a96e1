import { chmod, mkdtemp, rm, stat } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import pg from 'pg'
import { buildApp } from '../../src/app.js'
import { loadConfig } from '../../src/config.js'
import { createThrowawayDatabase } from '../../src/tooling/throwaway-database.js'
import { migrations } from '../../db/migrations/index.js'
import { books, build, buildBehindProxy, sql, testConfig } from '../helper.js'
import { waitFor } from '../support/load.js'

t.test('a restart keeps balances; migrations and seeders re-run as no-ops', async (t) => {
  const db = await createThrowawayDatabase('restart')
  t.teardown(db.drop)
  const first = await build(t, { database: db })
  const changed = await first.app.inject({ method: 'PATCH', url: '/api/balance', payload: { userId: 1, amount: -1234 } })
  t.equal(changed.statusCode, 200)
  await first.app.close()

  const second = await build(t, { database: db })
  t.same(await books(second.app, 1), { balance: 8766, journalSum: 8766, entries: 2 }, 'balance kept, seed not re-applied')
  const meta = await sql<{ name: string }>(second.app, 'SELECT name FROM "SequelizeMeta" ORDER BY name')
  t.same(meta.map((row) => row.name), migrations.map((migration) => migration.name).sort(), 'every migration recorded once')
  const seeds = await sql<{ name: string }>(second.app, 'SELECT name FROM "SequelizeData"')
  t.same(seeds.map((row) => row.name), ['0001-user-one'], 'the seeder is recorded once')
})

t.test('several instances booting together on one fresh database all come up', async (t) => {
  const db = await createThrowawayDatabase('concurrent-boot')
  t.teardown(db.drop)
  const apps = await Promise.all([1, 2, 3].map(async () => await buildApp(testConfig(db.url))))
  t.teardown(async () => { await Promise.all(apps.map(async (app) => { await app.close() })) })
  for (const app of apps) {
    const res = await app.inject({ method: 'GET', url: '/api/users/1' })
    t.equal(res.statusCode, 200)
    t.equal(res.json().balance, 10000)
  }
  const users = await sql<{ n: string }>(apps[0]!, 'SELECT count(*) AS n FROM users')
  t.equal(Number(users[0]?.n), 1, 'user 1 seeded once')
  t.same(await books(apps[0]!, 1), { balance: 10000, journalSum: 10000, entries: 1 })
})

t.test('PostgreSQL unreachable: 503 promptly, then recovery without a restart', async (t) => {
  const { app, db, proxy } = await buildBehindProxy(t, 'unreachable', { DB_CONNECT_TIMEOUT_MS: '1000', DB_ACQUIRE_TIMEOUT_MS: '3000' })

  t.equal((await app.inject({ method: 'GET', url: '/api/health' })).statusCode, 200)

  // Requests in flight when the connection breaks get 503, never a 500. To be sure the cut lands while they are in
  // flight, user 1's advisory lock is held (straight to PostgreSQL, not through the proxy) until the cut has answered:
  // the first change waits on it in PostgreSQL, the others behind it in the service.
  const holder = new pg.Client({ connectionString: db.url })
  holder.on('error', () => {})
  await holder.connect()
  t.teardown(async () => { await holder.end() })
  await holder.query('SELECT pg_advisory_lock(1)')
  const inFlight = Array.from({ length: 50 }, async () => await app.inject({ method: 'PATCH', url: '/api/balance', payload: { userId: 1, amount: -1 } }))
  const waited = await waitFor(async () => (await holder.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = \'Lock\' AND application_name = \'balance-api\'')).rows[0]!.n > 0, 10_000, 20)
  t.ok(waited >= 0, 'a change waits on user 1\'s lock in PostgreSQL when the connection breaks')
  await proxy.cut()
  const answers = await Promise.all(inFlight)
  await holder.query('SELECT pg_advisory_unlock(1)')
  const statuses = answers.map((res) => res.statusCode)
  t.same([...new Set(answers.map((res) => `${res.statusCode} ${String(res.json().code)}`))], ['503 DB_UNAVAILABLE'], 'every change in flight when the connection broke: 503 DB_UNAVAILABLE')

  const started = Date.now()
  const health = await app.inject({ method: 'GET', url: '/api/health' })
  t.equal(health.statusCode, 503)
  t.same(health.json(), { status: 'error', db: 'down' })
  const patch = await app.inject({ method: 'PATCH', url: '/api/balance', payload: { userId: 1, amount: -1 } })
  t.equal(patch.statusCode, 503)
  t.match(patch.json(), { statusCode: 503, code: 'DB_UNAVAILABLE', error: 'Service Unavailable' })
  const read = await app.inject({ method: 'GET', url: '/api/users/1' })
  t.equal(read.statusCode, 503)
  t.ok(Date.now() - started < 10_000, `answered within 10 s (${Date.now() - started} ms)`)

  await proxy.restore()
  let recovered = 0
  for (let attempt = 0; attempt < 50 && recovered === 0; attempt += 1) {
    const res = await app.inject({ method: 'GET', url: '/api/health' })
    if (res.statusCode === 200) recovered = attempt + 1
    else await new Promise((resolve) => setTimeout(resolve, 100))
  }
  t.ok(recovered > 0, 'health is 200 again')
  const after = await app.inject({ method: 'PATCH', url: '/api/balance', payload: { userId: 1, amount: -1 } })
  t.equal(after.statusCode, 200, 'a change succeeds again without a restart')

  // Every 200 has its journal entry; a 503 may or may not have committed, and the books balance either way.
  const state = await books(app, 1)
  t.equal(state.balance, state.journalSum, 'Σ journal = balance')
  const applied = statuses.filter((status) => status === 200).length + 1
  t.ok(state.entries - 1 >= applied, `every acknowledged change is journaled (${state.entries - 1} ≥ ${applied})`)
})

t.test('embedded default: DATABASE_URL unset boots an embedded PostgreSQL that keeps data across restarts', async (t) => {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'balance-embedded-'))
  await chmod(dataDir, 0o755) // as root, PostgreSQL runs as 'postgres' and must enter this folder
  t.teardown(async () => { await rm(dataDir, { recursive: true, force: true }) })
  const config = loadConfig({ PGDATA_DIR: path.join(dataDir, 'pg'), LOG_LEVEL: 'silent' }, false)
  t.equal(config.DATABASE_URL, undefined)

  const first = await buildApp(config)
  const res = await first.inject({ method: 'PATCH', url: '/api/balance', payload: { userId: 1, amount: -10 } })
  t.equal(res.statusCode, 200)
  t.equal(res.json().balance, 9990)
  await first.close()
  t.ok((await stat(path.join(dataDir, 'pg', 'PG_VERSION'))).isFile(), 'the cluster lives in PGDATA_DIR')

  const second = await buildApp(config)
  t.teardown(async () => { await second.close() })
  const read = await second.inject({ method: 'GET', url: '/api/users/1' })
  t.equal(read.json().balance, 9990, 'data survives a restart')
})
