import type { Sequelize } from 'sequelize'
import { boundedQuery } from '../db/pooler.js'
import { OverloadedError } from '../domain/errors.js'

/**
 * A bound on the idempotency key table. Every keyed write stores its key for IDEMPOTENCY_TTL_HOURS, whatever its
 * outcome (a refusal or an unknown user too), so callers could otherwise grow the table without limit: past
 * IDEMPOTENCY_MAX_KEYS live rows a new keyed write is refused with 503 OVERLOADED (nothing applied; keyless writes and
 * reads go on), after one bounded purge of expired keys has had its chance to make room.
 *
 * The count is PostgreSQL's own estimate of live rows (pg_stat_user_tables.n_live_tup, kept current by every
 * backend's statistics), read at most once per KEY_COUNT_REFRESH_MS and shared by every request meanwhile: no count(*) over
 * millions of rows, and no hot counter row that every keyed write would have to lock. It lags by about a second,
 * and the first keyed write after a read is judged by the previous one, so the bound is approximate by a second or
 * two of writes, which is what a guard against unbounded growth needs.
 */
export const KEY_COUNT_REFRESH_MS = 1_000
/** Expired keys one purge deletes when the table is at its bound (oldest first, skipping locked rows). */
export const FULL_PURGE_LIMIT = 1_000
const RETRY_AFTER_SECONDS = 60

const LIVE_KEYS_SQL = `SELECT coalesce((SELECT n_live_tup FROM pg_stat_user_tables
  WHERE relid = 'idempotency_keys'::regclass), 0)::bigint AS n`
const PURGE_SQL = `WITH purged AS (DELETE FROM idempotency_keys d WHERE d.key IN (
    SELECT e.key FROM idempotency_keys e WHERE e.expires_at <= now() ORDER BY e.expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)
  RETURNING 1) SELECT count(*)::bigint AS n FROM purged`

export class KeyStoreBudget {
  private estimate = 0
  private readAt = Number.NEGATIVE_INFINITY
  private reading: Promise<void> | undefined

  constructor (private readonly sequelize: Sequelize, readonly maxKeys: number) {
    if (!Number.isSafeInteger(maxKeys) || maxKeys < 1) throw new Error(`invariant: key budget ${maxKeys} must be ≥ 1`)
  }

  /** Resolves when a new key may be stored; throws OverloadedError when the table is at its bound. */
  async admit (): Promise<void> {
    if (performance.now() - this.readAt >= KEY_COUNT_REFRESH_MS) this.refreshInBackground()
    if (this.estimate < this.maxKeys) return
    const purged = await this.count(PURGE_SQL, [FULL_PURGE_LIMIT])
    this.estimate = Math.max(0, this.estimate - purged)
    if (this.estimate < this.maxKeys) return
    throw new OverloadedError(`the idempotency key store holds its limit of ${this.maxKeys} keys (IDEMPOTENCY_MAX_KEYS)`, RETRY_AFTER_SECONDS)
  }

  /**
   * A new estimate, read beside the write rather than before it: a keyed write below the bound never waits for it
   * (and never depends on one more round trip). One read at a time, at most one per KEY_COUNT_REFRESH_MS; a failed
   * read keeps the last estimate (the write itself reports a lost database).
   */
  private refreshInBackground (): void {
    if (this.reading !== undefined) return
    this.readAt = performance.now()
    this.reading = this.count(LIVE_KEYS_SQL, []).then((n) => { this.estimate = n }, () => {}).finally(() => { this.reading = undefined })
  }

  private async count (text: string, values: unknown[]): Promise<number> {
    const rows = await boundedQuery<{ n: string }>(this.sequelize, text, values)
    return Number(rows[0]?.n ?? 0)
  }
}
