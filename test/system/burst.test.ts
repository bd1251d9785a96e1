import type { FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import { buildApp } from '../../src/app.js'
import { build, books, listen, sql, strategies, testConfig } from '../helper.js'
import { burst, type BurstResult } from '../support/burst.js'

// The seed scenario: user 1 holds 10000; 10,000 simultaneous PATCH -2 over real sockets to a listening server.
const REQUESTS = 10_000

/** Exactly 5000 × 200 and 5000 × 409 INSUFFICIENT_FUNDS, balance 0, 5000 new entries that each saw their own balance. */
async function assertSeedOutcome (t: Test, app: FastifyInstance, results: BurstResult[]): Promise<void> {
  const add = (into: Record<string, number>, from: Record<string, number>): Record<string, number> => {
    for (const [name, n] of Object.entries(from)) into[name] = (into[name] ?? 0) + n
    return into
  }
  const errors = results.reduce((all, result) => add(all, result.errors), {})
  const statuses = results.reduce((all, result) => add(all, result.statuses), {})
  const codes = results.reduce((all, result) => add(all, result.codes), {})
  t.same(errors, {}, 'no connection error')
  t.same(statuses, { 200: 5000, 409: 5000 }, 'exactly 5000 × 200 and 5000 × 409')
  t.same(codes, { INSUFFICIENT_FUNDS: 5000 }, 'every 409 is INSUFFICIENT_FUNDS')
  t.same(await books(app, 1), { balance: 0, journalSum: 0, entries: 5001 }, 'balance 0, Σ journal = balance, 5000 new entries')
  const [negative] = await sql<{ n: string }>(app, 'SELECT count(*) AS n FROM journal_entries WHERE balance_after < 0')
  t.equal(Number(negative?.n), 0, 'no journal entry shows a negative balance')
  const [distinct] = await sql<{ n: string }>(app, 'SELECT count(DISTINCT balance_after) AS n FROM journal_entries WHERE user_id = 1 AND kind = \'change\'')
  t.equal(Number(distinct?.n), 5000, 'every applied change saw a distinct balance: none lost, none applied twice')
}

/** Keys: each of the 10,000 was claimed once and stored its outcome; the 5000 applied ones tag one entry each. */
async function assertKeys (t: Test, app: FastifyInstance, prefix: string): Promise<void> {
  const [keys] = await sql<{ stored: string, applied: string, tagged: string }>(app, `
    SELECT (SELECT count(*) FROM idempotency_keys WHERE key LIKE $1 AND result IS NOT NULL) AS stored,
           (SELECT count(*) FROM idempotency_keys WHERE key LIKE $1 AND result->>'outcome' = 'applied') AS applied,
           (SELECT count(*) FROM journal_entries WHERE idempotency_key LIKE $1) AS tagged`, [`${prefix}-%`])
  t.same({ stored: Number(keys?.stored), applied: Number(keys?.applied), tagged: Number(keys?.tagged) },
    { stored: 10_000, applied: 5000, tagged: 5000 }, 'every key stored its outcome; each applied one tags exactly one entry')
}

for (const groupCommit of ['on', 'off'] as const) {
  for (const strategy of strategies) {
    t.test(`10,000 simultaneous PATCH -2 on 10000 (${strategy}, group commit ${groupCommit})`, async (t) => {
      const { app } = await build(t, { strategy, env: { GROUP_COMMIT: groupCommit } })
      const base = await listen(app)
      t.same(await books(app, 1), { balance: 10000, journalSum: 10000, entries: 1 }, 'seeded user 1 with its opening entry')

      const result = await burst(`${base}/api/balance`, REQUESTS, { userId: 1, amount: -2 })
      t.comment(`${strategy}, group commit ${groupCommit}: ${REQUESTS} requests in ${Math.round(result.wallMs)} ms, p99 ${Math.round(result.latencyMs.p99)} ms`)
      await assertSeedOutcome(t, app, [result])
    })
  }

  t.test(`the keyed seed burst: a unique Idempotency-Key on each of 10,000 PATCH -2 (advisory, group commit ${groupCommit})`, async (t) => {
    const { app } = await build(t, { env: { GROUP_COMMIT: groupCommit } })
    const base = await listen(app)
    const prefix = `seed-${groupCommit}`
    const result = await burst(`${base}/api/balance`, REQUESTS, { userId: 1, amount: -2 }, prefix)
    t.comment(`keyed, group commit ${groupCommit}: ${REQUESTS} requests in ${Math.round(result.wallMs)} ms, p99 ${Math.round(result.latencyMs.p99)} ms`)
    await assertSeedOutcome(t, app, [result])
    await assertKeys(t, app, prefix)
  })
}

t.test('the seed burst split across two instances on one database, keyless and keyed at once (advisory, group commit on)', async (t) => {
  const { app: first, db } = await build(t)
  const second = await buildApp(testConfig(db.url))
  t.teardown(async () => { await second.close() })
  const [one, two] = await Promise.all([listen(first), listen(second)])
  // Half of each kind on each instance: their batches serialize on the same advisory lock in the database.
  const results = await Promise.all([
    burst(`${one}/api/balance`, REQUESTS / 4, { userId: 1, amount: -2 }),
    burst(`${two}/api/balance`, REQUESTS / 4, { userId: 1, amount: -2 }),
    burst(`${one}/api/balance`, REQUESTS / 4, { userId: 1, amount: -2 }, 'split-one'),
    burst(`${two}/api/balance`, REQUESTS / 4, { userId: 1, amount: -2 }, 'split-two'),
  ])
  t.comment(`two instances: ${results.map((result) => JSON.stringify(result.statuses)).join(' ')}`)
  await assertSeedOutcome(t, first, results)
  const [keys] = await sql<{ stored: string, tagged: string }>(first, `
    SELECT (SELECT count(*) FROM idempotency_keys WHERE key LIKE 'split-%' AND result IS NOT NULL) AS stored,
           (SELECT count(*) FROM journal_entries WHERE idempotency_key LIKE 'split-%') AS tagged`)
  const keyedOk = results.slice(2).reduce((n, result) => n + (result.statuses['200'] ?? 0), 0)
  t.same({ stored: Number(keys?.stored), tagged: Number(keys?.tagged) }, { stored: 5000, tagged: keyedOk },
    'each keyed request stored its outcome; each keyed 200 tags exactly one entry')
})
