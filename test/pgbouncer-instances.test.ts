import t from 'tap'
import { books, sql } from './helper.js'
import { burst } from './support/burst.js'
import { haveSystemTools } from './support/system-tool.js'
import { PGBOUNCER } from './support/pgbouncer.js'
import { behindPgBouncer, send } from './support/behind-pgbouncer.js'
import { checkBooks } from '../src/db/check-books.js'

// Several instances sharing nothing but the database, all through ONE PgBouncer in transaction mode: the seed burst,
// keyed retries and a mixed storm split across them, with exact outcomes.

const INSTANCES = 2
/** The seed figures: user 1 holds 10000, 10,000 × PATCH -2 → exactly 5000 × 200 and 5000 × 409. */
const BURST_REQUESTS = 10_000
const KEYS = 100
const STORM_USERS = 5
const STORM_OPENING = 1000
const STORM_OPERATIONS = 1500
const STORM_CONCURRENCY = 40

function tally (values: Array<string | number>): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const value of values) counts[value] = (counts[value] ?? 0) + 1
  return counts
}

/** A small deterministic generator, so a failing storm can be replayed. */
function random (seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state * 1664525 + 1013904223) >>> 0
    return state / 2 ** 32
  }
}

t.test(`${INSTANCES} instances on one PgBouncer (transaction mode)`, async (t) => {
  if (!haveSystemTools(t, [PGBOUNCER])) return
  // PgBouncer's point: the instances' 2 × 10 client connections share 10 server connections (on one hot row more
  // would only queue inside PostgreSQL). A generous timeout: this test is about exact outcomes, and on a shared 2-core
  // box a 10k burst's lock queue can pass the default 10 s (test/pgbouncer.test.ts proves the timeouts).
  const { apps, bases } = await behindPgBouncer(t, 'pgb_instances', {
    instances: INSTANCES,
    env: { DB_STATEMENT_TIMEOUT_MS: '60000' },
    bouncer: { poolSize: 10 },
  })
  const app = apps[0]!

  t.test(`the seed burst split over ${INSTANCES} instances`, async (t) => {
    t.same(await books(app, 1), { balance: 10000, journalSum: 10000, entries: 1 }, 'seeded user 1 with its opening entry')
    const share = BURST_REQUESTS / INSTANCES
    const results = await Promise.all(bases.map(async (base) => await burst(`${base}/api/balance`, share, { userId: 1, amount: -2 })))
    const sum = (pick: (r: typeof results[number]) => Record<string, number>): Record<string, number> => {
      const total: Record<string, number> = {}
      for (const result of results) for (const [k, v] of Object.entries(pick(result))) total[k] = (total[k] ?? 0) + v
      return total
    }
    t.comment(`per instance: ${results.map((r) => `${JSON.stringify(r.statuses)} in ${Math.round(r.wallMs)} ms`).join('; ')}`)
    t.same(sum((r) => r.errors), {}, 'no connection error')
    t.same(sum((r) => r.statuses), { 200: 5000, 409: 5000 }, 'exactly 5000 × 200 and 5000 × 409 over both instances')
    t.same(sum((r) => r.codes), { INSUFFICIENT_FUNDS: 5000 }, 'every 409 is INSUFFICIENT_FUNDS')
    for (const result of results) t.ok((result.statuses['200'] ?? 0) > 0, 'each instance applied some of the changes')
    t.same(await books(app, 1), { balance: 0, journalSum: 0, entries: 5001 }, 'balance 0, Σ journal = balance, 5000 new entries')
    const [distinct] = await sql<{ n: string }>(app, 'SELECT count(DISTINCT balance_after) AS n FROM journal_entries WHERE user_id = 1 AND kind = \'change\'')
    t.equal(Number(distinct?.n), 5000, 'every applied change saw a distinct balance: none lost, none applied twice')
  })

  t.test('the same Idempotency-Key sent to both instances at once: exactly once', async (t) => {
    const created = await send(bases[0]!, 'POST', '/api/users', { balance: 1000 })
    const userId = created.body.id as number
    const pairs = await Promise.all(Array.from({ length: KEYS }, async (_, i) => {
      const key = `pgb-both-${i}`
      return await Promise.all(bases.map(async (base) => await send(base, 'PATCH', '/api/balance', { userId, amount: -3 }, key)))
    }))
    const all = pairs.flat()
    t.same(tally(all.map((a) => a.status)), { 200: KEYS * INSTANCES }, 'every answer is 200')
    t.equal(pairs.filter((pair) => new Set(pair.map((a) => a.body.entryId)).size === 1).length, KEYS, 'both instances answer each key with the same entry')
    t.equal(pairs.filter((pair) => pair.filter((a) => !a.replayed).length === 1).length, KEYS, 'each key executed once; the other answer is a replay')
    // And once more, later, through the other instance: a replay, nothing changes.
    const again = await Promise.all(pairs.map(async (pair, i) => await send(bases[1]!, 'PATCH', '/api/balance', { userId, amount: -3 }, `pgb-both-${i}`)))
    t.equal(again.filter((a, i) => a.status === 200 && a.replayed && a.body.entryId === pairs[i]![0]!.body.entryId).length, KEYS, 'a later retry replays the same answer')
    t.same(await books(app, userId), { balance: 1000 - 3 * KEYS, journalSum: 1000 - 3 * KEYS, entries: 1 + KEYS }, 'one journal entry per key')
  })

  t.test(`a mixed storm of ${STORM_OPERATIONS} changes and transfers over both instances`, async (t) => {
    const users: number[] = []
    for (let i = 0; i < STORM_USERS; i += 1) users.push((await send(bases[i % INSTANCES]!, 'POST', '/api/users', { balance: STORM_OPENING })).body.id as number)
    const expected = new Map(users.map((id) => [id, STORM_OPENING]))
    const entries = new Map(users.map((id) => [id, 1]))
    const next = random(11)
    const statuses: number[] = []
    const codes: string[] = []
    let cursor = 0
    await Promise.all(Array.from({ length: STORM_CONCURRENCY }, async () => {
      while (cursor < STORM_OPERATIONS) {
        const n = cursor++
        const base = bases[n % INSTANCES]!
        const a = users[Math.floor(next() * users.length)]!
        const key = n % 3 === 0 ? `storm-${n}` : undefined
        if (next() < 0.5) {
          let b = users[Math.floor(next() * users.length)]!
          if (b === a) b = users[(users.indexOf(a) + 1) % users.length]!
          const amount = 1 + Math.floor(next() * 300)
          const answer = await send(base, 'POST', '/api/transfers', { fromUserId: a, toUserId: b, amount }, key)
          statuses.push(answer.status)
          if (answer.status === 201) {
            expected.set(a, expected.get(a)! - amount); expected.set(b, expected.get(b)! + amount)
            entries.set(a, entries.get(a)! + 1); entries.set(b, entries.get(b)! + 1)
          } else codes.push(String(answer.body.code))
        } else {
          const amount = (next() < 0.5 ? -1 : 1) * (1 + Math.floor(next() * 300))
          const answer = await send(base, 'PATCH', '/api/balance', { userId: a, amount }, key)
          statuses.push(answer.status)
          if (answer.status === 200) { expected.set(a, expected.get(a)! + amount); entries.set(a, entries.get(a)! + 1) } else codes.push(String(answer.body.code))
        }
      }
    }))
    const counted = tally(statuses)
    t.same(Object.keys(counted).filter((s) => !['200', '201', '409'].includes(s)), [], `only 200, 201 and 409 (${JSON.stringify(counted)})`)
    t.same(Object.keys(tally(codes)), codes.length === 0 ? [] : ['INSUFFICIENT_FUNDS'], 'every refusal is INSUFFICIENT_FUNDS')
    for (const id of users) {
      t.same(await books(app, id), { balance: expected.get(id), journalSum: expected.get(id), entries: entries.get(id) }, `user ${id}: exactly the acknowledged changes`)
    }
    const report = await checkBooks(app.sequelize)
    t.ok(report.ok, `the books checker passes (${JSON.stringify(report.violations)})`)
  })
})
