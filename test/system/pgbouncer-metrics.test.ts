import t from 'tap'
import pg from 'pg'
import { haveSystemTools } from '../support/system-tool.js'
import { PGBOUNCER } from '../../src/tooling/pgbouncer.js'
import { behindPgBouncer, send } from '../support/behind-pgbouncer.js'

// /metrics behind a stock PgBouncer 1.18 in transaction mode: the lock-waiter gauge reads pg_stat_activity through the
// service's own pooled connections (no startup parameters, which PgBouncer refuses) and shows a change waiting there.

async function advisoryWaiters (base: string): Promise<number | undefined> {
  const response = await fetch(`${base}/metrics`)
  if (response.status !== 200) throw new Error(`GET /metrics: ${response.status}`)
  const line = /^db_lock_waiters\{wait_event="advisory"\} (\d+)$/m.exec(await response.text())
  return line === null ? undefined : Number(line[1])
}

t.test('behind PgBouncer, db_lock_waiters shows a change waiting on the user\'s advisory lock', async (t) => {
  if (!haveSystemTools(t, [PGBOUNCER])) return
  const { db, bases } = await behindPgBouncer(t, 'pgb_metrics', { env: { DB_STATEMENT_TIMEOUT_MS: '20000' } })
  const base = bases[0]!
  t.equal(await advisoryWaiters(base), 0, 'nobody waits while idle (the gauge is read, not left empty)')

  const holder = new pg.Client({ connectionString: db.url })
  holder.on('error', () => {})
  await holder.connect()
  t.teardown(async () => { await holder.end() })
  await holder.query('SELECT pg_advisory_lock(1)')
  const waiting = send(base, 'PATCH', '/api/balance', { userId: 1, amount: 5 })
  let seen: number | undefined
  for (let attempt = 0; attempt < 50 && seen !== 1; attempt += 1) {
    await new Promise((resolve) => setTimeout(resolve, 100))
    seen = await advisoryWaiters(base)
  }
  t.equal(seen, 1, 'the one change waiting on user 1\'s advisory lock is seen')
  await holder.query('SELECT pg_advisory_unlock(1)')
  const answer = await waiting
  t.same([answer.status, answer.body.balance], [200, 10005], 'the change applies once the lock is free')
  t.equal(await advisoryWaiters(base), 0, 'and nobody waits any more')
})
