import pg from 'pg'
import t from 'tap'
import { MAX_BALANCE, MIN_BALANCE } from '../../src/domain/money.js'
import { IDEMPOTENCY_PURGE_LIMIT, fingerprint } from '../../src/services/idempotency.js'
import { BATCH_CHANGE_SQL } from '../../src/strategies/batch.js'
import { KEY_COUNT_REFRESH_MS } from '../../src/services/key-store-budget.js'
import { books, build, sql } from '../helper.js'
import { assertBooksBalance, newUser } from '../support/ledger.js'

// The purge of expired idempotency keys must never take part in a deadlock. Keyed batches claim their keys in sorted
// order before any user lock, so two batches never wait for each other's keys in a cycle — unless a purge in the
// middle of a transaction has locked some other expired key that a later claim of another batch needs, while it still
// has claims of its own to make. Here every batch re-claims expired keys and claims fresh ones in one statement.

const BATCHES = 24
const ROUNDS = 4
const EXPIRED = 400
const PURGE_LIMIT = IDEMPOTENCY_PURGE_LIMIT
const TTL_SECONDS = 3600

function keysFor (batch: number, round: number): string[] {
  // Two fresh keys (each claim of one purges) around expired keys other batches claim too, in sorted claim order.
  const expired = [0, 1, 2, 3].map((k) => `exp-${String((batch * 7 + round * 13 + k * 101) % EXPIRED).padStart(4, '0')}`)
  return [`aaa-${round}-${batch}`, ...expired, `zzz-${round}-${batch}`]
}

t.test('keyed batches that re-claim expired keys while others purge them never deadlock', async (t) => {
  const { app, db } = await build(t)
  const users = await Promise.all(Array.from({ length: BATCHES }, async () => await newUser(app, 1_000_000)))
  const pool = new pg.Pool({ connectionString: db.url, max: BATCHES })
  t.teardown(async () => { await pool.end() })

  const errors: string[] = []
  let executed = 0
  for (let round = 0; round < ROUNDS; round += 1) {
    // Every key of the table expired: each fresh claim may purge any of them, each batch re-claims some.
    await sql(app, `INSERT INTO idempotency_keys (key, request_fingerprint, result, expires_at)
      SELECT 'exp-' || lpad(i::text, 4, '0'), 'old', '{}'::jsonb, now() - interval '1 hour' FROM generate_series(0, $1 - 1) i
      ON CONFLICT (key) DO UPDATE SET expires_at = now() - interval '1 hour', result = '{}'::jsonb, request_fingerprint = 'old'`, [EXPIRED])
    // Connections held first, then every batch sent at once, so that they overlap inside PostgreSQL.
    const clients = await Promise.all(users.map(async () => await pool.connect()))
    await Promise.all(users.map(async (userId, batch) => {
      const client = clients[batch]!
      const keys = keysFor(batch, round)
      const amounts = keys.map(() => 1)
      const fingerprints = keys.map((key) => fingerprint('change', [userId, 1, key]))
      try {
        const none = keys.map(() => null)
        const result = await client.query(BATCH_CHANGE_SQL, ['advisory', userId, keys.map(() => 'change'), amounts, none, none, none, keys, fingerprints, MIN_BALANCE, MAX_BALANCE, TTL_SECONDS, PURGE_LIMIT])
        executed += result.rows.filter((row: { idempotency: string }) => row.idempotency === 'executed').length
      } catch (error) {
        errors.push(`${(error as { code?: string }).code ?? ''} ${(error as Error).message}`)
      } finally {
        client.release()
      }
    }))
  }
  t.same(errors, [], 'no batch failed (no 40P01 deadlock)')
  t.ok(executed > 0, `${executed} keyed changes executed`)
  const [stale] = await sql<{ n: string }>(app, 'SELECT count(*) AS n FROM idempotency_keys WHERE expires_at <= now()')
  t.ok(Number(stale!.n) < EXPIRED, `the purge ran (${stale!.n} of ${EXPIRED} expired keys left)`)
  await assertBooksBalance(t, app)
})

t.test('one keyed write purges at most the limit of expired keys, and only expired ones', async (t) => {
  const { app } = await build(t)
  const userId = await newUser(app, 10)
  await sql(app, `INSERT INTO idempotency_keys (key, request_fingerprint, result, expires_at)
    SELECT 'old-' || i, 'old', '{}'::jsonb, now() - interval '1 minute' FROM generate_series(1, $1) i`, [PURGE_LIMIT * 3])
  await sql(app, `INSERT INTO idempotency_keys (key, request_fingerprint, result, expires_at)
    VALUES ('live-1', 'x', '{}'::jsonb, now() + interval '1 hour')`)
  const res = await app.inject({ method: 'PATCH', url: '/api/balance', payload: { userId, amount: 1 }, headers: { 'idempotency-key': 'purger-1' } })
  t.equal(res.statusCode, 200)
  const [left] = await sql<{ expired: string, live: string }>(app, `SELECT count(*) FILTER (WHERE expires_at <= now()) AS expired,
    count(*) FILTER (WHERE expires_at > now()) AS live FROM idempotency_keys`)
  t.equal(Number(left!.expired), PURGE_LIMIT * 2, 'exactly the limit purged')
  t.equal(Number(left!.live), 2, 'live keys kept: the one written now and the other')
})

t.test('the key table is bounded: past IDEMPOTENCY_MAX_KEYS a new keyed write is 503 OVERLOADED, nothing applied', async (t) => {
  const { app } = await build(t, { env: { IDEMPOTENCY_MAX_KEYS: '1000' } })
  const userId = await newUser(app, 10)
  const keyed = async (key: string, amount = 1): Promise<{ status: number, body: Record<string, unknown>, retryAfter: unknown }> => {
    const res = await app.inject({ method: 'PATCH', url: '/api/balance', payload: { userId, amount }, headers: { 'idempotency-key': key } })
    return { status: res.statusCode, body: res.json(), retryAfter: res.headers['retry-after'] }
  }
  t.equal((await keyed('under-the-bound')).status, 200, 'under the bound: applied')

  // 1,200 live keys (of unknown users, say), counted in PostgreSQL's statistics at once.
  await sql(app, `INSERT INTO idempotency_keys (key, request_fingerprint, result, expires_at)
    SELECT 'live-' || i, 'x', '{}'::jsonb, now() + interval '1 hour' FROM generate_series(1, 1200) i`)
  await sql(app, 'SELECT pg_stat_force_next_flush()')
  // The estimate is read beside the keyed writes, at most once a second: the first write after a fresh read is refused.
  let refusedKey = 'over-the-bound-0'
  let before = await books(app, userId)
  let full = await keyed(refusedKey)
  for (let attempt = 1; full.status !== 503 && attempt <= 20; attempt += 1) {
    await new Promise((resolve) => setTimeout(resolve, KEY_COUNT_REFRESH_MS / 4))
    refusedKey = `over-the-bound-${attempt}`
    before = await books(app, userId)
    full = await keyed(refusedKey)
  }
  t.equal(full.status, 503)
  t.match(full.body, { statusCode: 503, code: 'OVERLOADED', message: /IDEMPOTENCY_MAX_KEYS/ })
  t.equal(full.retryAfter, '60', 'Retry-After')
  t.same(await books(app, userId), before, 'nothing applied')
  const [stored] = await sql<{ n: string }>(app, 'SELECT count(*) AS n FROM idempotency_keys WHERE key = $1', [refusedKey])
  t.equal(Number(stored!.n), 0, 'the refused key was not stored: a retry later runs it')
  const keyless = await app.inject({ method: 'PATCH', url: '/api/balance', payload: { userId, amount: 1 } })
  t.equal(keyless.statusCode, 200, 'keyless writes go on')

  // Expired keys make room: the full purge deletes them and the write goes through.
  await sql(app, "UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key LIKE 'live-%'")
  const after = await keyed('after-expiry')
  t.equal(after.status, 200, 'after the keys expired: applied')
})
