import { execFile, spawn, type ChildProcessByStdio } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import type { Readable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import pg from 'pg'
import { createThrowawayDatabase } from '../../src/tooling/throwaway-database.js'
import { freePort } from '../../src/db/embedded-postgres.js'
import { SIGNAL_ECHO_WINDOW_MS } from '../../src/shutdown-signals.js'
import { waitFor } from '../support/load.js'

// The real built server as a child process: 2,000 PATCH -1 on user 1 (10000), SIGTERM after half of them answered.
const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const REQUESTS = 2000
const CONCURRENCY = 64
const SIGNAL_AFTER = REQUESTS / 2
const BUILD_TIMEOUT_MS = 180_000
const START_TIMEOUT_MS = 60_000
const REQUEST_TIMEOUT_MS = 30_000
const EXIT_TIMEOUT_MS = 30_000
const WAIT_TIMEOUT_MS = 10_000
/** What a client may see from a server that has stopped accepting: the request was not applied. */
const NOT_SERVED = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE'])

interface Outcome { status?: number, error?: string }

async function buildServer (): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    execFile('npm', ['run', 'build'], { cwd: ROOT, timeout: BUILD_TIMEOUT_MS }, (error, _stdout, stderr) => {
      if (error === null) resolve()
      else reject(new Error(`npm run build failed: ${error.message} ${stderr}`))
    })
  })
}

function change (port: number, agent: http.Agent): Promise<Outcome> {
  const payload = JSON.stringify({ userId: 1, amount: -1 })
  return new Promise((resolve) => {
    const req = http.request({
      host: '127.0.0.1',
      port,
      path: '/api/balance',
      method: 'PATCH',
      agent,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
      timeout: REQUEST_TIMEOUT_MS,
    }, (res) => {
      res.resume()
      res.on('end', () => { resolve({ status: res.statusCode }) })
      res.on('error', (error: NodeJS.ErrnoException) => { resolve({ error: error.code ?? error.message }) })
    })
    req.on('timeout', () => { req.destroy(Object.assign(new Error('timeout'), { code: 'CLIENT_TIMEOUT' })) })
    req.on('error', (error: NodeJS.ErrnoException) => { resolve({ error: error.code ?? error.message }) })
    req.end(payload)
  })
}

/**
 * The environment a user would start the server with: without the test runner's loader and coverage hooks
 * (NODE_OPTIONS, NODE_V8_COVERAGE, TAP*), which otherwise follow the child and change how it exits.
 */
function userEnvironment (): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([key]) =>
    key !== 'NODE_OPTIONS' && key !== 'NODE_V8_COVERAGE' && !/^_?TAP/i.test(key)))
}

interface Server {
  child: ChildProcessByStdio<null, Readable, Readable>
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  output: () => { stdout: string, stderr: string }
}

/** Starts dist/src/server.js with `env` and resolves once it listens; killed in teardown if still running. */
async function startServer (t: Test, env: Record<string, string>): Promise<Server> {
  const child = spawn(process.execPath, ['dist/src/server.js'], {
    cwd: ROOT,
    env: { ...userEnvironment(), HOST: '127.0.0.1', LOG_LEVEL: 'info', LOG_PRETTY: 'false', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>((resolve) => {
    // 'close', not 'exit': only then has all of its stdout been read.
    child.once('close', (code, signal) => { resolve({ code, signal }) })
  })
  let stdout = ''
  let stderr = ''
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`server did not listen in ${START_TIMEOUT_MS} ms: ${stdout}${stderr}`)) }, START_TIMEOUT_MS)
    const poll = setInterval(() => {
      if (!stdout.includes('Server listening at')) return
      clearInterval(poll)
      clearTimeout(timer)
      resolve()
    }, 20)
    void exited.then(({ code }) => { clearInterval(poll); clearTimeout(timer); reject(new Error(`server exited with ${code} at start: ${stdout}${stderr}`)) })
  })
  return { child, exited, output: () => ({ stdout, stderr }) }
}

async function exitOf (server: Server): Promise<{ code: number | null, signal: NodeJS.Signals | null }> {
  return await Promise.race([
    server.exited,
    new Promise<never>((_resolve, reject) => setTimeout(() => { reject(new Error(`server did not exit in ${EXIT_TIMEOUT_MS} ms`)) }, EXIT_TIMEOUT_MS).unref()),
  ])
}

/** User 1's balance, its change entries and Σ of its journal: what the service's answers must add up to. */
async function userOneBooks (url: string): Promise<{ balance: number, entries: number, total: number }> {
  const [row] = await query<{ balance: string, entries: string, total: string }>(url, `
    SELECT u.balance,
      (SELECT count(*) FROM journal_entries WHERE user_id = 1 AND kind = 'change') AS entries,
      (SELECT sum(amount) FROM journal_entries WHERE user_id = 1) AS total
    FROM users u WHERE u.id = 1`)
  return { balance: Number(row?.balance), entries: Number(row?.entries), total: Number(row?.total) }
}

async function query<T extends pg.QueryResultRow> (url: string, sql: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return (await client.query<T>(sql)).rows
  } finally {
    await client.end()
  }
}

t.before(buildServer)

t.test(`SIGTERM during ${REQUESTS} changes: in-flight requests finish, every 200 is one journal row, exit 0`, async (t) => {
  const db = await createThrowawayDatabase('shutdown')
  t.teardown(db.drop)
  const port = await freePort()
  const server = await startServer(t, { DATABASE_URL: db.url, PORT: String(port), BALANCE_STRATEGY: 'advisory' })
  const { child } = server

  const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY })
  t.teardown(() => { agent.destroy() })
  const outcomes: Outcome[] = []
  let signalled = false
  let next = 0
  async function worker (): Promise<void> {
    while (next < REQUESTS) {
      next += 1
      outcomes.push(await change(port, agent))
      if (!signalled && outcomes.length >= SIGNAL_AFTER) {
        signalled = true
        child.kill('SIGTERM')
      }
    }
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, worker))

  t.same(await exitOf(server), { code: 0, signal: null }, 'the server exits 0 on SIGTERM')
  const { stdout, stderr } = server.output()

  const statuses: Record<string, number> = {}
  const errors: Record<string, number> = {}
  for (const outcome of outcomes) {
    if (outcome.status !== undefined) statuses[outcome.status] = (statuses[outcome.status] ?? 0) + 1
    else errors[outcome.error!] = (errors[outcome.error!] ?? 0) + 1
  }
  t.comment(`statuses ${JSON.stringify(statuses)}, connection errors ${JSON.stringify(errors)}`)
  t.equal(outcomes.length, REQUESTS, 'every request got an answer or a connection error')
  t.same(Object.keys(statuses), ['200'], 'only 200s: no 500, no 503 while closing')
  t.ok(Object.keys(errors).every((code) => NOT_SERVED.has(code)), `only refused/reset connections: ${Object.keys(errors).join(', ')}`)
  const ok = statuses[200] ?? 0
  t.ok(ok >= SIGNAL_AFTER && ok < REQUESTS, `SIGTERM came midway: ${ok} served`)

  const books = await userOneBooks(db.url)
  t.equal(books.entries, ok, 'the number of 200s equals the number of new journal rows')
  t.equal(books.balance, 10000 - ok, 'the balance went down by exactly the 200s')
  t.equal(books.total, books.balance, 'balance = Σ journal')

  const lines = stdout.trim().split('\n').map((line) => JSON.parse(line) as { msg: string, signal?: string, level: number })
  t.ok(lines.some((line) => line.msg.startsWith('closing') && line.signal === 'SIGTERM'), 'logs the signal')
  t.equal(lines.at(-1)?.msg, 'closed', 'logs the end of the close last')
  t.equal(stderr, '', 'nothing on stderr')
})

t.test('SIGINT twice at once (Ctrl-C under npm start) with the embedded PostgreSQL: one graceful close, the database stops with the service, exit 0', async (t) => {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'balance-shutdown-pg-'))
  t.teardown(async () => { await rm(dataDir, { recursive: true, force: true }) })
  const port = await freePort()
  const env: Record<string, string> = { PORT: String(port), PGDATA_DIR: dataDir }
  const server = await startServer(t, { ...env, DATABASE_URL: '' })
  t.ok(existsSync(path.join(dataDir, 'postmaster.pid')), 'the embedded PostgreSQL runs')
  const res = await fetch(`http://127.0.0.1:${port}/api/health`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) })
  t.same(await res.json(), { status: 'ok', db: 'up' })
  // As Ctrl-C on `npm start` at a terminal delivers it: once from the terminal to the process group, once more from
  // npm forwarding what it got. The echo must not count as a second signal (it used to exit 1 at once). Two kills
  // back to back would merge into one pending signal in the kernel; the echo is sent once the first has been handled.
  const firstAt = Date.now()
  server.child.kill('SIGINT')
  await new Promise<void>((resolve) => {
    const onData = (): void => {
      if (!server.output().stdout.includes('"msg":"closing')) return
      server.child.stdout.off('data', onData)
      resolve()
    }
    server.child.stdout.on('data', onData)
    onData()
  })
  t.ok(server.child.kill('SIGINT'), 'the echo reached the service while it was closing')
  const echoAfterMs = Date.now() - firstAt
  t.ok(echoAfterMs < SIGNAL_ECHO_WINDOW_MS, `the echo came within the window: ${echoAfterMs} ms after the first`)
  t.same(await exitOf(server), { code: 0, signal: null }, 'exit 0 on SIGINT delivered twice at once')
  t.notOk(existsSync(path.join(dataDir, 'postmaster.pid')), 'the embedded PostgreSQL has stopped (no postmaster.pid)')
  const lines = server.output().stdout.trim().split('\n').map((line) => JSON.parse(line) as { msg: string, level: number })
  t.ok(lines.some((line) => line.msg === 'embedded PostgreSQL stopped'), 'the embedded PostgreSQL stop is logged')
  // Not "the last line is 'closed'": that line races process.exit in close-with-grace and was lost in 1 of ~4 CI runs.
  t.same(lines.filter((line) => line.level >= 50).map((line) => line.msg), [], 'no error logged while closing')
})

t.test('a second signal past the echo window, while a request is still in flight: exit 1 at once; the change in flight still commits in the database, once', async (t) => {
  const db = await createThrowawayDatabase('shutdown_insist')
  t.teardown(db.drop)
  const port = await freePort()
  const server = await startServer(t, { DATABASE_URL: db.url, PORT: String(port), BALANCE_STRATEGY: 'advisory' })

  // Hold user 1's advisory lock elsewhere, so that one PATCH stays in flight (up to the 10 s statement timeout) and the
  // graceful close has to wait for it.
  const holder = new pg.Client({ connectionString: db.url })
  await holder.connect()
  t.teardown(async () => { await holder.end() })
  await holder.query('SELECT pg_advisory_lock(1)')
  const agent = new http.Agent({ keepAlive: false })
  t.teardown(() => { agent.destroy() })
  const inFlight = change(port, agent)
  // pg_locks is cluster-wide and the machine's PostgreSQL is shared: count this database's waiters only.
  t.not(await waitFor(async () => (await query<{ waiting: string }>(db.url, `
    SELECT count(*) AS waiting FROM pg_locks
    WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
  ))[0]?.waiting === '1', WAIT_TIMEOUT_MS), -1, 'the PATCH waits on the lock')

  server.child.kill('SIGTERM')
  await new Promise((resolve) => setTimeout(resolve, SIGNAL_ECHO_WINDOW_MS + 300))
  t.equal(server.child.exitCode, null, 'still closing: waiting for the request in flight')
  const insistedAt = Date.now()
  server.child.kill('SIGTERM')
  t.same(await exitOf(server), { code: 1, signal: null }, 'exit 1 on the second SIGTERM')
  const exitMs = Date.now() - insistedAt
  t.ok(exitMs < 3_000, `at once, not after the request or the 10 s grace: ${exitMs} ms`)
  const outcome = await inFlight
  t.ok(outcome.error !== undefined && NOT_SERVED.has(outcome.error), `the request in flight saw its connection reset: ${JSON.stringify(outcome)}`)

  // Exiting at once does not take back what the database was already doing: the backend, waiting on the lock, does
  // not notice its client is gone, and once the lock is free it commits. The client saw a reset for a change that was
  // applied: the reason a client retries with its Idempotency-Key (docs/operations.md, "Graceful shutdown").
  await holder.query('SELECT pg_advisory_unlock(1)')
  t.not(await waitFor(async () => (await query<{ busy: string }>(db.url, `
    SELECT count(*) AS busy FROM pg_stat_activity
    WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'active'`))[0]?.busy === '0', WAIT_TIMEOUT_MS), -1,
  'the orphaned backend finished')
  t.same(await userOneBooks(db.url), { balance: 9999, entries: 1, total: 9999 }, 'the change in flight committed after the exit, exactly once: balance 9999, one journal row, balance = Σ journal')
  const lines = server.output().stdout.trim().split('\n').map((line) => JSON.parse(line) as { msg: string, signal?: string })
  t.ok(lines.some((line) => line.msg.startsWith('closing') && line.signal === 'SIGTERM'), 'the first SIGTERM started the close')
  t.ok(lines.some((line) => line.msg === 'second SIGTERM, exiting'), 'the second one is logged as such')
})
