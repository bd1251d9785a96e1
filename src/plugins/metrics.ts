import fp from 'fastify-plugin'
import pg from 'pg'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { Sequelize } from 'sequelize'
import type { BalanceObserver, ChangeResult } from '../services/balance-service.js'
import { commonErrors } from '../schemas/common.js'

declare module 'fastify' {
  interface FastifyInstance {
    metrics: { registry: Registry }
  }
}

/** The parts of sequelize-pool's Pool we read (Sequelize does not type `connectionManager.pool`). */
interface PoolStats { size: number, available: number, using: number, waiting: number, maxSize: number }

const HTTP_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]
const TRANSACTION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
/** Changes per group-commit statement: powers of two up to the largest cap (GROUP_COMMIT_MAX_BATCH ≤ 4096). */
const BATCH_SIZE_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096]
const UNMATCHED_ROUTE = '(unmatched)'
/**
 * A scrape waits at most this long for the lock-waiter query, pooled connection included (a scrape during a burst
 * must not queue behind thousands of changes); past it the gauge keeps its last value. The statement itself is
 * bounded by the same figure, set LOCAL with it.
 */
const LOCK_QUERY_WAIT_MS = 1_000
const REFUSALS = new Set<ChangeResult>(['insufficient_funds', 'balance_limit_exceeded', 'user_not_found'])

/**
 * Sessions of this database waiting on a lock right now, by wait event (advisory, transactionid, tuple, …), as one
 * simple-protocol string: the timeout set LOCAL first, in the same round trip and implicit transaction, so it holds
 * on whatever server connection a pooler picks and leaves nothing behind (no startup parameter: PgBouncer refuses them).
 */
const LOCK_WAITERS_SQL = `SELECT set_config('statement_timeout', '${LOCK_QUERY_WAIT_MS}', true), set_config('lock_timeout', '${LOCK_QUERY_WAIT_MS}', true);
  SELECT wait_event, count(*)::int AS n FROM pg_stat_activity
  WHERE datname = current_database() AND wait_event_type = 'Lock' GROUP BY wait_event`

type LockWaiterRow = { wait_event: string, n: number }
/** What became of one lock-waiter query: its rows came back in time, came later (or never), or it failed. */
type LockQueryResult = 'answered' | 'late' | 'failed'

/** The balance service's observer: changes applied, refused and failed, their transaction time, batch sizes. */
function balanceObserver (registry: Registry): BalanceObserver {
  const applied = new Counter({
    name: 'balance_changes_applied_total',
    help: 'Balance changes committed (one journal entry each), by strategy',
    labelNames: ['strategy'] as const,
    registers: [registry],
  })
  const refused = new Counter({
    name: 'balance_changes_refused_total',
    help: 'Balance changes refused by a business rule (nothing written), by strategy and reason',
    labelNames: ['strategy', 'reason'] as const,
    registers: [registry],
  })
  const failed = new Counter({
    name: 'balance_changes_failed_total',
    help: 'Balance changes that failed: db_unavailable (503), overloaded (503, shed unsent) or error (a bug, 500), by strategy',
    labelNames: ['strategy', 'reason'] as const,
    registers: [registry],
  })
  const transaction = new Histogram({
    name: 'balance_change_transaction_seconds',
    help: 'Time of the strategy call (pool wait + the change\'s transaction), by strategy and result',
    labelNames: ['strategy', 'result'] as const,
    buckets: TRANSACTION_BUCKETS,
    registers: [registry],
  })
  const batchSize = new Histogram({
    name: 'balance_batch_size',
    help: 'Changes per statement sent by group commit (1: a lone change), by strategy; its _count is the batches sent',
    labelNames: ['strategy'] as const,
    buckets: BATCH_SIZE_BUCKETS,
    registers: [registry],
  })
  const batches = new Counter({
    name: 'balance_batches_total',
    help: 'Statements (transactions) group commit sent for balance changes, by strategy',
    labelNames: ['strategy'] as const,
    registers: [registry],
  })

  // Hot path: one counter increment and one histogram observation per change (about 1-2 µs together, measured).
  return {
    changeFinished (strategy, result, seconds) {
      if (result === 'applied') applied.inc({ strategy })
      else if (REFUSALS.has(result)) refused.inc({ strategy, reason: result })
      else failed.inc({ strategy, reason: result })
      transaction.observe({ strategy, result }, seconds)
    },
    batchFinished (strategy, size) {
      batchSize.observe({ strategy }, size)
      batches.inc({ strategy })
    },
  }
}

/** Pool state, read at scrape time from sequelize-pool (Sequelize does not type `connectionManager.pool`). */
function poolGauges (registry: Registry, sequelize: Sequelize): void {
  const pool = (): PoolStats | undefined => (sequelize.connectionManager as unknown as { pool?: PoolStats }).pool
  new Gauge({
    name: 'db_pool_connections',
    help: 'Pooled PostgreSQL connections by state (in_use, idle) and the configured max',
    labelNames: ['state'] as const,
    registers: [registry],
    collect () {
      const stats = pool()
      if (stats === undefined) return
      this.set({ state: 'in_use' }, stats.using)
      this.set({ state: 'idle' }, stats.available)
      this.set({ state: 'max' }, stats.maxSize)
    },
  })
  new Gauge({
    name: 'db_pool_waiting_requests',
    help: 'Requests waiting for a pooled connection',
    registers: [registry],
    collect () { this.set(pool()?.waiting ?? 0) },
  })
}

/** Lock waiters at scrape time: one bounded query on a pooled connection, shared by concurrent scrapes. */
function lockWaiterGauge (registry: Registry, sequelize: Sequelize): void {
  const lockQueries = new Counter({
    name: 'db_lock_waiter_queries_total',
    help: 'Lock-waiter queries sent by scrapes (concurrent scrapes share one), by result: answered, late (no answer within 1 s: the gauge kept its last value) or failed',
    labelNames: ['result'] as const,
    registers: [registry],
  })
  const readLockWaiters = singleFlight(sequelize, (result) => { lockQueries.inc({ result }) })
  new Gauge({
    name: 'db_lock_waiters',
    help: 'Sessions of this database waiting on a lock at scrape time, by wait event (a hot row shows here)',
    labelNames: ['wait_event'] as const,
    registers: [registry],
    async collect () {
      const rows = await readLockWaiters()
      if (rows === undefined) return
      this.reset()
      this.set({ wait_event: 'advisory' }, 0)
      for (const row of rows) this.set({ wait_event: row.wait_event }, row.n)
    },
  })
}

function createMetrics (registry: Registry, sequelize: Sequelize): { observer: BalanceObserver, httpDuration: Histogram } {
  const httpDuration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'HTTP request latency by method, route pattern and status; its _count is the request count',
    labelNames: ['method', 'route', 'status_code'] as const,
    buckets: HTTP_BUCKETS,
    registers: [registry],
  })
  poolGauges(registry, sequelize)
  lockWaiterGauge(registry, sequelize)
  return { observer: balanceObserver(registry), httpDuration }
}

/**
 * The lock-waiter query on one of the service's own pooled connections (the pool it is given: point it elsewhere by
 * passing another Sequelize). Rejects when the database fails; a connection that may have broken mid-query is marked
 * invalid so the pool replaces it, as hotQuery does.
 */
async function queryLockWaiters (sequelize: Sequelize): Promise<LockWaiterRow[]> {
  const connection = await sequelize.connectionManager.getConnection({ type: 'read' }) as unknown as pg.Client & { _invalid?: boolean }
  try {
    const results = await connection.query(LOCK_WAITERS_SQL) as unknown as Array<pg.QueryResult<LockWaiterRow>>
    return results[results.length - 1]!.rows
  } catch (error) {
    if (!(error instanceof pg.DatabaseError)) connection._invalid = true
    throw error
  } finally {
    sequelize.connectionManager.releaseConnection(connection as never)
  }
}

/**
 * At most one lock-waiter query at a time, however many scrapes: scrapes that arrive while it runs share its answer.
 * Each waits at most LOCK_QUERY_WAIT_MS (then: undefined, the gauge keeps its last value). A query that outlived its
 * scrapes (still queued for a pooled connection in a burst) is not joined by a second one: until it ends, scrapes get
 * undefined at once, so the pool's queue never holds more than one of them.
 */
function singleFlight (sequelize: Sequelize, count: (result: LockQueryResult) => void): () => Promise<LockWaiterRow[] | undefined> {
  let shared: Promise<LockWaiterRow[] | undefined> | undefined
  let running = false
  return async () => {
    if (shared !== undefined) return await shared
    if (running) return undefined
    running = true
    let result: LockQueryResult | undefined
    const record = (outcome: LockQueryResult): void => {
      if (result !== undefined) return
      result = outcome
      count(outcome)
    }
    let timer: NodeJS.Timeout | undefined
    const query = queryLockWaiters(sequelize).then(
      (rows) => { record('answered'); return rows },
      () => { record('failed'); return undefined })
    void query.finally(() => { running = false; clearTimeout(timer) })
    const late = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => { record('late'); resolve(undefined) }, LOCK_QUERY_WAIT_MS)
    })
    shared = Promise.race([query, late])
    try {
      return await shared
    } finally {
      shared = undefined
    }
  }
}

/**
 * Prometheus metrics at GET /metrics (text format), on a registry of this app's own: HTTP latency by route and
 * status, balance changes applied/refused/failed by strategy and reason, the strategy call's time, pool state,
 * lock waiters, and the process metrics of prom-client. Observes the balance service through its observer hook,
 * so the service stays free of metrics code and the strategies of HTTP.
 */
export default fp(async function metrics (fastify) {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  const { observer, httpDuration } = createMetrics(registry, fastify.sequelize)
  fastify.balanceService.observe(observer)
  fastify.decorate('metrics', { registry })

  // Labels are bounded: route patterns (not paths), methods Node accepts, status codes.
  fastify.addHook('onResponse', (request, reply, done) => {
    httpDuration.observe({ method: request.method, route: request.routeOptions.url ?? UNMATCHED_ROUTE, status_code: reply.statusCode }, reply.elapsedTime / 1000)
    done()
  })

  fastify.get('/metrics', {
    schema: {
      summary: 'Prometheus metrics',
      description: 'Prometheus text exposition format: HTTP, balance changes, transaction time, DB pool, lock waiters, process.',
      tags: ['operations'],
      response: {
        200: { description: 'Prometheus text format', content: { 'text/plain': { schema: { type: 'string' } } } },
        500: commonErrors[500],
      },
    },
  }, async (_request, reply) => {
    const text = await registry.metrics()
    return await reply.type(registry.contentType).send(text)
  })
}, { name: 'metrics', dependencies: ['config', 'database', 'balance-service'] })
