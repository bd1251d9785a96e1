import pg from 'pg'
import type { Test } from 'tap'

/** Holds pg_advisory_xact_lock(userId) on a connection of its own (not the app's pool) until release(). */
export async function holdLock (t: Test, url: string, userId: number): Promise<() => Promise<void>> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  t.teardown(async () => { await client.end() })
  await client.query('BEGIN')
  await client.query('SELECT pg_advisory_xact_lock($1::bigint)', [userId])
  return async () => { await client.query('COMMIT') }
}
