import pg from 'pg'
import { USER_BOOKS_SQL, toUserBooks, type UserBooks, type UserBooksRow } from '../src/db/check-books.js'
import type { StrategyName } from '../src/config.js'
import { MAX_BALANCE, MIN_BALANCE } from '../src/domain/money.js'
import { ADVISORY_CHANGE_SQL } from '../src/strategies/advisory.js'
import { ATOMIC_CHANGE_SQL, ATOMIC_DECIDE_SQL } from '../src/strategies/atomic.js'
import { ROW_LOCK_CHANGE_SQL } from '../src/strategies/row-lock.js'
import { BATCH_CHANGE_SQL } from '../src/strategies/batch.js'
import type { BatchLock } from '../src/strategies/types.js'

/** The user the burst empties (seeded by the service's own seeder). */
export const BURST_USER = 1
/** Opening balance of the hot-row user and of every spread user: enough that −1 never runs out. */
export const BOTTOMLESS_BALANCE = 1_000_000_000_000

/** Users the bench adds to a freshly migrated database: one hot row, and `spread` more, each with an opening entry. */
export interface Fixtures {
  hotUser: number
  spreadFrom: number
  spreadTo: number
}

export async function createFixtures (pool: pg.Pool, spreadUsers: number): Promise<Fixtures> {
  const client = await pool.connect()
  try {
    await client.query('BEGIN')
    const { rows } = await client.query<{ id: string }>(
      'INSERT INTO users (balance) SELECT $1::bigint FROM generate_series(1, $2::int) ORDER BY 1 RETURNING id',
      [BOTTOMLESS_BALANCE, spreadUsers + 1])
    const ids = rows.map((row) => Number(row.id)).sort((a, b) => a - b)
    const first = ids[0]!
    const last = ids[ids.length - 1]!
    if (last - first !== spreadUsers) throw new Error('bench fixtures: user ids are not contiguous')
    await client.query(`INSERT INTO journal_entries (user_id, amount, balance_after, kind)
      SELECT id, balance, balance, 'opening' FROM users WHERE id BETWEEN $1 AND $2`, [first, last])
    await client.query('COMMIT')
    await client.query('VACUUM ANALYZE users')
    await client.query('ANALYZE journal_entries')
    return { hotUser: first, spreadFrom: first + 1, spreadTo: last }
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {})
    throw error
  } finally {
    client.release()
  }
}

/** Gives `userId` exactly `balance` again, through a journal entry, so Σ journal = balance stays true. */
export async function resetBalance (pool: pg.Pool, userId: number, balance: number): Promise<void> {
  const client = await pool.connect()
  try {
    await client.query('BEGIN')
    const { rows } = await client.query<{ balance: string }>('SELECT balance FROM users WHERE id = $1 FOR UPDATE', [userId])
    const delta = balance - Number(rows[0]?.balance)
    if (delta !== 0) {
      await client.query('UPDATE users SET balance = $2, updated_at = now() WHERE id = $1', [userId, balance])
      await client.query(`INSERT INTO journal_entries (user_id, amount, balance_after, kind) VALUES ($1, $2, $3, 'change')`,
        [userId, delta, balance])
    }
    await client.query('COMMIT')
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {})
    throw error
  } finally {
    client.release()
  }
}

export type { UserBooks as Books } from '../src/db/check-books.js'

/** Σ journal amounts, stored balance and entry count of one user (the same query the tests use). */
export async function books (pool: pg.Pool, userId: number): Promise<UserBooks> {
  const { rows } = await pool.query<UserBooksRow>(USER_BOOKS_SQL, [userId])
  return toUserBooks(rows[0], userId)
}

export async function journalCount (pool: pg.Pool): Promise<number> {
  const { rows } = await pool.query<{ n: string }>('SELECT count(*) AS n FROM journal_entries')
  return Number(rows[0]?.n)
}

/** Waits until nothing more is journalled (requests still in flight when a load stopped), then returns the count. */
export async function settledJournalCount (pool: pg.Pool): Promise<number> {
  let last = await journalCount(pool)
  for (let i = 0; i < 100; i += 1) {
    await new Promise((resolve) => setTimeout(resolve, 150))
    const now = await journalCount(pool)
    if (now === last) return now
    last = now
  }
  return last
}

/** The invariants that must hold for every user after any scenario. Returns failures, empty when all hold. */
export async function globalInvariants (pool: pg.Pool): Promise<string[]> {
  const failures: string[] = []
  const { rows: mismatched } = await pool.query<{ n: string }>(`
    SELECT count(*) AS n FROM users u
    LEFT JOIN (SELECT user_id, SUM(amount) AS s FROM journal_entries GROUP BY user_id) j ON j.user_id = u.id
    WHERE u.balance <> COALESCE(j.s, 0)`)
  if (Number(mismatched[0]?.n) !== 0) failures.push(`${mismatched[0]?.n} users whose balance ≠ Σ journal`)
  const { rows: negative } = await pool.query<{ n: string }>(`
    SELECT (SELECT count(*) FROM users WHERE balance < 0) + (SELECT count(*) FROM journal_entries WHERE balance_after < 0) AS n`)
  if (Number(negative[0]?.n) !== 0) failures.push(`${negative[0]?.n} negative balances`)
  return failures
}

/** Each strategy's exact SQL, as the strategy sends it: binds [userId, amount, MIN_BALANCE, MAX_BALANCE, metadata]. */
export const changeSql: Record<StrategyName, string> = {
  advisory: ADVISORY_CHANGE_SQL,
  'row-lock': ROW_LOCK_CHANGE_SQL,
  atomic: ATOMIC_CHANGE_SQL,
}

export type CeilingOutcome = 'applied' | 'insufficient_funds' | 'other'

/**
 * One change exactly as the strategy makes it, straight through pg: the change SQL, and for atomic's refusal the
 * second read the strategy makes to explain it (so a refusal costs the same round trips as in the service).
 */
export async function ceilingChange (pool: pg.Pool, strategy: StrategyName, userId: number, amount: number): Promise<CeilingOutcome> {
  // A named prepared statement, as the service sends it (src/db/hot-query.ts): parsed and planned once per connection.
  const { rows } = await pool.query<{ outcome: string }>({ name: `bench_ceiling_${strategy}`, text: changeSql[strategy], values: [userId, amount, MIN_BALANCE, MAX_BALANCE, null] })
  const outcome = rows[0]?.outcome
  if (outcome === undefined && strategy === 'atomic') {
    // The service's own second statement for a refused CTE (it decides for good).
    const decided = await pool.query<{ outcome: string }>(ATOMIC_DECIDE_SQL, [userId, amount, MIN_BALANCE, MAX_BALANCE, null])
    const second = decided.rows[0]?.outcome
    return second === 'applied' || second === 'insufficient_funds' ? second : 'other'
  }
  return outcome === 'applied' || outcome === 'insufficient_funds' ? outcome : 'other'
}

function percentile (sorted: number[], p: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!
}

export interface CeilingLoadOutcome {
  reqPerSec: number
  p50Ms: number
  p99Ms: number
  applied: number
  other: number
  errors: number
  durationS: number
}

/** `workers` async loops, each calling the change one at a time through the pool, for `seconds`. */
export async function ceilingLoad (pool: pg.Pool, strategy: StrategyName, workers: number, seconds: number, pickUser: () => number): Promise<CeilingLoadOutcome> {
  const outcome = await timedLoop(workers, seconds, async () => {
    const applied = await ceilingChange(pool, strategy, pickUser(), -1) === 'applied'
    return { applied: applied ? 1 : 0, other: applied ? 0 : 1 }
  })
  const { callsPerSec, p50Ms, p99Ms, applied, other, errors, durationS } = outcome
  return { reqPerSec: callsPerSec, p50Ms, p99Ms, applied, other, errors, durationS }
}

export interface CeilingBurstOutcome {
  wallMs: number
  applied: number
  insufficient: number
  other: number
  errors: number
  latencyMs: { p50: number, p99: number, max: number }
}

/** `count` changes of −2 on one user issued at once; the pool queues them, as the service's pool would. */
export async function ceilingBurst (pool: pg.Pool, strategy: StrategyName, userId: number, count: number): Promise<CeilingBurstOutcome> {
  const started = performance.now()
  const results = await Promise.all(Array.from({ length: count }, async () => {
    const t0 = performance.now()
    try {
      return { outcome: await ceilingChange(pool, strategy, userId, -2), ms: performance.now() - t0 }
    } catch {
      return { outcome: 'error' as const, ms: performance.now() - t0 }
    }
  }))
  const wallMs = performance.now() - started
  const latencies = results.map((r) => r.ms).sort((a, b) => a - b)
  const count_ = (what: string): number => results.filter((r) => r.outcome === what).length
  return {
    wallMs,
    applied: count_('applied'),
    insufficient: count_('insufficient_funds'),
    other: count_('other'),
    errors: count_('error'),
    latencyMs: { p50: percentile(latencies, 50), p99: percentile(latencies, 99), max: latencies.at(-1) ?? 0 },
  }
}

/**
 * The per-commit ceiling: the pgbench shape — ONE conditional UPDATE of one hot row per transaction
 * (autocommit, no journal, no lock but the row's), driven by `workers` callers, one per pooled connection.
 * Every change is its own commit, so this is what one-durable-commit-per-change allows on this box.
 */
export const PER_COMMIT_SQL = 'UPDATE users SET balance = balance + $2, updated_at = now() WHERE id = $1 AND balance + $2 >= 0'

export interface DatabaseLoadOutcome {
  /** Changes applied per second (one per call for the per-commit ceiling; batch size per call for the batched one). */
  changesPerSec: number
  callsPerSec: number
  p50Ms: number
  p99Ms: number
  calls: number
  applied: number
  /** Calls or rows that came back other than applied. */
  other: number
  errors: number
  durationS: number
}

async function timedLoop (workers: number, seconds: number, call: () => Promise<{ applied: number, other: number }>): Promise<DatabaseLoadOutcome> {
  const latencies: number[] = []
  let applied = 0
  let other = 0
  let errors = 0
  const started = performance.now()
  const end = started + seconds * 1000
  await Promise.all(Array.from({ length: workers }, async () => {
    while (performance.now() < end) {
      const t0 = performance.now()
      try {
        const outcome = await call()
        applied += outcome.applied
        other += outcome.other
      } catch {
        errors += 1
      }
      latencies.push(performance.now() - t0)
    }
  }))
  const durationS = (performance.now() - started) / 1000
  latencies.sort((a, b) => a - b)
  return {
    changesPerSec: applied / durationS,
    callsPerSec: latencies.length / durationS,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    calls: latencies.length,
    applied,
    other,
    errors,
    durationS,
  }
}

/** `workers` callers of PER_COMMIT_SQL (−1 on `userId`) for `seconds`; a named prepared statement, like pgbench -M prepared. */
export async function perCommitLoad (pool: pg.Pool, userId: number, workers: number, seconds: number): Promise<DatabaseLoadOutcome> {
  return await timedLoop(workers, seconds, async () => {
    const { rowCount } = await pool.query({ name: 'bench_per_commit', text: PER_COMMIT_SQL, values: [userId, -1] })
    return rowCount === 1 ? { applied: 1, other: 0 } : { applied: 0, other: 1 }
  })
}

/**
 * The per-commit ceiling leaves no journal entries (that is its shape); one balancing entry afterwards keeps
 * Σ journal = balance true for the user, so the global invariants still hold. Returns the user's balance drop.
 */
export async function balancePerCommit (pool: pg.Pool, userId: number, balanceBefore: number): Promise<number> {
  const client = await pool.connect()
  try {
    await client.query('BEGIN')
    const { rows } = await client.query<{ balance: string }>('SELECT balance FROM users WHERE id = $1 FOR UPDATE', [userId])
    const balance = Number(rows[0]?.balance)
    const drop = balanceBefore - balance
    if (drop !== 0) {
      await client.query(`INSERT INTO journal_entries (user_id, amount, balance_after, kind) VALUES ($1, $2, $3, 'change')`,
        [userId, -drop, balance])
    }
    await client.query('COMMIT')
    return drop
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {})
    throw error
  } finally {
    client.release()
  }
}

export async function balanceOf (pool: pg.Pool, userId: number): Promise<number> {
  const { rows } = await pool.query<{ balance: string }>('SELECT balance FROM users WHERE id = $1', [userId])
  return Number(rows[0]?.balance)
}

/**
 * The batched database ceiling: BATCH_CHANGE_SQL (the service's group-commit statement) with `size` keyless −1 changes
 * on one hot user per call, one caller (one batch in flight per user, as one instance's group commit has), for `seconds`.
 * Every row must come back applied.
 */
export async function batchLoad (pool: pg.Pool, lock: BatchLock, userId: number, size: number, seconds: number): Promise<DatabaseLoadOutcome> {
  const amounts = Array.from({ length: size }, () => -1)
  const ops = Array.from({ length: size }, () => 'change')
  const nulls = Array.from({ length: size }, () => null)
  return await timedLoop(1, seconds, async () => {
    const { rows } = await pool.query<{ outcome: string | null }>({
      name: 'bench_batch_change',
      text: BATCH_CHANGE_SQL,
      values: [lock, userId, ops, amounts, nulls, nulls, nulls, nulls, nulls, MIN_BALANCE, MAX_BALANCE, null, null],
    })
    const applied = rows.filter((row) => row.outcome === 'applied').length
    return { applied, other: size - applied }
  })
}

/** A new user holding `balance`, with its opening journal entry (as the service's own user creation writes). */
export async function createUser (pool: pg.Pool, balance: number): Promise<number> {
  const { rows } = await pool.query<{ result: { id: number } }>('SELECT result FROM user_create($1, NULL, NULL, NULL, NULL)', [balance])
  return Number(rows[0]!.result.id)
}

/** One user's holds and held amount: active holds (count, Σ amount), captured holds, users.held, capture entries. */
export interface HoldBooks { active: number, activeSum: number, captured: number, held: number, balance: number, captureEntries: number, entries: number }

export async function holdBooks (pool: pg.Pool, userId: number): Promise<HoldBooks> {
  const { rows } = await pool.query<Record<keyof HoldBooks, string>>(`
    SELECT (SELECT count(*) FROM holds WHERE user_id = $1 AND status = 'active') AS active,
           (SELECT COALESCE(sum(amount), 0) FROM holds WHERE user_id = $1 AND status = 'active') AS "activeSum",
           (SELECT count(*) FROM holds WHERE user_id = $1 AND status = 'captured') AS captured,
           (SELECT count(*) FROM journal_entries WHERE user_id = $1 AND kind = 'capture') AS "captureEntries",
           (SELECT count(*) FROM journal_entries WHERE user_id = $1) AS entries,
           held, balance FROM users WHERE id = $1`, [userId])
  const row = rows[0]
  if (row === undefined) throw new Error(`no user ${userId}`)
  return Object.fromEntries(Object.entries(row).map(([key, value]) => [key, Number(value)])) as unknown as HoldBooks
}

/** Rows of the events table (written by triggers with EVENTS=on). */
export async function eventCount (pool: pg.Pool): Promise<number> {
  const { rows } = await pool.query<{ n: string }>('SELECT count(*) AS n FROM events')
  return Number(rows[0]?.n)
}
