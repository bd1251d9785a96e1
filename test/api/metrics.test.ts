import type { FastifyInstance } from 'fastify'
import t from 'tap'
import { build, strategies } from '../helper.js'

interface Sample { name: string, labels: Record<string, string>, value: number }

/** Parses the Prometheus text format (enough of it for our own output: no escaped quotes in label values). */
function parse (text: string): Sample[] {
  const samples: Sample[] = []
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (match === null) throw new Error(`not a sample line: ${line}`)
    const labels: Record<string, string> = {}
    for (const [, key, value] of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"/g)) labels[key!] = value!
    samples.push({ name: match[1]!, labels, value: Number(match[3]) })
  }
  return samples
}

/** The value of the one sample with this name whose labels include `labels`; 0 when there is none (a counter not yet moved). */
function value (samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
  if (found.length > 1) throw new Error(`${found.length} samples match ${name} ${JSON.stringify(labels)}`)
  return found[0]?.value ?? 0
}

for (const strategy of strategies) {
  t.test(`GET /metrics counts requests and balance changes (${strategy})`, async (t) => {
    const { app } = await build(t, { strategy })
    const scrape = async (): Promise<Sample[]> => {
      const res = await app.inject('/metrics')
      t.equal(res.statusCode, 200)
      t.match(res.headers['content-type'], /^text\/plain; version=0\.0\.4/)
      return parse(res.body)
    }
    const before = await scrape()
    const patch = async (payload: object): Promise<number> => (await app.inject({ method: 'PATCH', url: '/api/balance', payload })).statusCode

    t.equal(await patch({ userId: 1, amount: -2 }), 200)
    t.equal(await patch({ userId: 1, amount: -2 }), 200)
    t.equal(await patch({ userId: 1, amount: 3 }), 200)
    t.equal(await patch({ userId: 1, amount: -1_000_000 }), 409)
    t.equal(await patch({ userId: 1, amount: Number.MAX_SAFE_INTEGER }), 409)
    t.equal(await patch({ userId: 424242, amount: 1 }), 404)
    t.equal(await patch({ userId: 1, amount: 0 }), 400)
    t.equal((await app.inject('/api/users/1')).statusCode, 200)
    t.equal((await app.inject('/nowhere')).statusCode, 404)

    const after = await scrape()
    const moved = (name: string, labels: Record<string, string>): number => value(after, name, labels) - value(before, name, labels)

    t.equal(moved('balance_changes_applied_total', { strategy }), 3, 'applied changes')
    t.equal(moved('balance_changes_refused_total', { strategy, reason: 'insufficient_funds' }), 1)
    t.equal(moved('balance_changes_refused_total', { strategy, reason: 'balance_limit_exceeded' }), 1)
    t.equal(moved('balance_changes_refused_total', { strategy, reason: 'user_not_found' }), 1)
    t.equal(moved('balance_changes_failed_total', { strategy, reason: 'db_unavailable' }), 0)
    t.equal(moved('balance_change_transaction_seconds_count', { strategy, result: 'applied' }), 3, 'one transaction time per applied change')
    t.equal(moved('balance_change_transaction_seconds_count', { strategy, result: 'insufficient_funds' }), 1)
    t.ok(moved('balance_change_transaction_seconds_sum', { strategy, result: 'applied' }) > 0, 'transaction time is measured')

    const http = (method: string, route: string, status: string): number =>
      moved('http_request_duration_seconds_count', { method, route, status_code: status })
    t.equal(http('PATCH', '/api/balance', '200'), 3, 'requests by route and status')
    t.equal(http('PATCH', '/api/balance', '409'), 2)
    t.equal(http('PATCH', '/api/balance', '404'), 1)
    t.equal(http('PATCH', '/api/balance', '400'), 1, 'a validation error is counted by the HTTP metric, not as a change')
    t.equal(http('GET', '/api/users/:id', '200'), 1, 'the route pattern, not the path, is the label')
    t.equal(http('GET', '(unmatched)', '404'), 1, 'unknown paths share one label')
    t.equal(http('GET', '/metrics', '200'), 1, 'the first scrape is counted')

    t.equal(value(after, 'db_pool_connections', { state: 'max' }), 10, 'pool max')
    t.equal(value(after, 'db_pool_connections', { state: 'in_use' }), 0, 'no connection in use between requests')
    t.ok(value(after, 'db_pool_connections', { state: 'idle' }) >= 1, 'idle pooled connections')
    t.equal(value(after, 'db_pool_waiting_requests'), 0)
    t.equal(value(after, 'db_lock_waiters', { wait_event: 'advisory' }), 0, 'nobody waits on a lock when idle')
    t.ok(value(after, 'process_cpu_seconds_total') > 0, 'process metrics')
    t.ok(value(after, 'process_resident_memory_bytes') > 0)
    t.ok(after.some((s) => s.name === 'nodejs_eventloop_lag_p99_seconds'), 'event loop lag')
  })
}

t.test('db_lock_waiters shows sessions queued on a hot row', async (t) => {
  // Group commit off: with it on, this instance sends one statement per user at a time and the other two changes
  // wait in the service for the next batch, not in PostgreSQL (test/system/group-commit.test.ts covers that side).
  const { app, db } = await build(t, { strategy: 'advisory', env: { GROUP_COMMIT: 'off' } })
  // Hold user 1's advisory lock in a transaction of our own, then send changes that must wait for it.
  const holder = await app.sequelize.transaction()
  await app.sequelize.query('SELECT pg_advisory_xact_lock(1::bigint)', { transaction: holder })
  const waiting = [1, 2, 3].map(async () => await app.inject({ method: 'PATCH', url: '/api/balance', payload: { userId: 1, amount: -1 } }))
  let waiters = 0
  for (let attempt = 0; attempt < 50 && waiters < 3; attempt++) {
    await new Promise((resolve) => setTimeout(resolve, 100))
    const res = await app.inject('/metrics')
    const line = /^db_lock_waiters\{wait_event="advisory"\} (\d+)$/m.exec(res.body)
    waiters = Number(line?.[1])
  }
  await holder.commit()
  t.equal(waiters, 3, `three changes wait on the advisory lock of user 1 (${db.name})`)
  t.same((await Promise.all(waiting)).map((res) => res.statusCode), [200, 200, 200])
})

/** The lock-waiter queries scrapes sent so far, by result (answered, late, failed), read without a scrape. */
async function lockQueries (app: FastifyInstance): Promise<{ answered: number, late: number, failed: number }> {
  const metric = await app.metrics.registry.getSingleMetric('db_lock_waiter_queries_total')!.get()
  const count = (result: string): number => metric.values.find((v) => v.labels.result === result)?.value ?? 0
  return { answered: count('answered'), late: count('late'), failed: count('failed') }
}

/** Every connection of the app's pool, taken and held: until released, a pooled query waits. */
async function holdWholePool (app: FastifyInstance): Promise<{ release: () => void }> {
  const manager = app.sequelize.connectionManager
  const max = app.config.DB_POOL_MAX
  const held = await Promise.all(Array.from({ length: max }, async () => await manager.getConnection({ type: 'write' })))
  let released = false
  const release = (): void => {
    if (released) return
    released = true
    for (const connection of held) manager.releaseConnection(connection)
  }
  return { release }
}

t.test('concurrent scrapes share one lock-waiter query on a pooled connection', async (t) => {
  const { app } = await build(t)
  t.equal((await app.inject('/metrics')).statusCode, 200)
  t.equal((await app.inject('/metrics')).statusCode, 200)
  t.same(await lockQueries(app), { answered: 2, late: 0, failed: 0 }, 'one query per scrape when scrapes come one at a time')
  // With the whole pool taken, the first scrape's query waits for a connection and the other scrapes arrive meanwhile.
  const pool = await holdWholePool(app)
  t.teardown(pool.release)
  const scrapes = Array.from({ length: 50 }, async () => await app.inject('/metrics'))
  await new Promise((resolve) => setTimeout(resolve, 200))
  pool.release()
  const answers = await Promise.all(scrapes)
  t.same([...new Set(answers.map((res) => res.statusCode))], [200], '50 concurrent scrapes: all 200')
  t.same([...new Set(answers.map((res) => /^db_lock_waiters\{wait_event="advisory"\} (\d+)$/m.exec(res.body)?.[1]))], ['0'], 'each shows the gauge')
  t.same(await lockQueries(app), { answered: 3, late: 0, failed: 0 }, 'the 50 scrapes sent one query between them')
})

t.test('a scrape finding no free pooled connection answers within about 1 s with the last value', async (t) => {
  const { app } = await build(t)
  t.equal((await app.inject('/metrics')).statusCode, 200)
  t.same(await lockQueries(app), { answered: 1, late: 0, failed: 0 }, 'a first scrape, answered')
  const pool = await holdWholePool(app)
  t.teardown(pool.release)
  const started = performance.now()
  const first = await app.inject('/metrics')
  const waited = performance.now() - started
  t.equal(first.statusCode, 200)
  t.ok(waited >= 950 && waited < 2_000, `answered after the 1 s wait, not the pool's acquire timeout (${Math.round(waited)} ms)`)
  t.match(first.body, /^db_lock_waiters\{wait_event="advisory"\} 0$/m, 'the last value is kept')
  // That query still waits in the pool's queue: a scrape now does not queue a second one behind it.
  const quick = performance.now()
  t.equal((await app.inject('/metrics')).statusCode, 200)
  t.ok(performance.now() - quick < 500, `the next scrape answers at once (${Math.round(performance.now() - quick)} ms)`)
  pool.release()
  // The late query now gets its connection and ends; until it has, scrapes keep the last value without a query.
  for (let attempt = 0; attempt < 40 && (await lockQueries(app)).answered < 2; attempt += 1) {
    await new Promise((resolve) => setTimeout(resolve, 50))
    t.equal((await app.inject('/metrics')).statusCode, 200)
  }
  t.same(await lockQueries(app), { answered: 2, late: 1, failed: 0 }, 'one late query while the pool was taken, none queued after it; then answered again')
})

t.test('METRICS_ENABLED=false serves no /metrics', async (t) => {
  const { app } = await build(t, { env: { METRICS_ENABLED: 'false' } })
  const res = await app.inject('/metrics')
  t.equal(res.statusCode, 404)
  t.equal(res.json().code, 'ROUTE_NOT_FOUND')
  t.equal((await app.inject({ method: 'PATCH', url: '/api/balance', payload: { userId: 1, amount: -2 } })).statusCode, 200, 'changes work without an observer')
})
