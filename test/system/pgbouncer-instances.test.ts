import t from 'tap'
import { books, checkBooksAfterFaults, sql } from '../helper.js'
import { burst } from '../support/burst.js'
import { haveSystemTools } from '../support/system-tool.js'
import { PGBOUNCER } from '../../src/tooling/pgbouncer.js'
import { behindPgBouncer, send } from '../support/behind-pgbouncer.js'
import { checkBooks, formatReport } from '../../src/db/check-books.js'
import { batchMetrics, modelCheckStorm } from '../support/model-check.js'
import { backendKiller, connect, exactlyOnceMismatches, retryingClient, type Operation, type Settled } from '../support/retry.js'

// Several instances sharing nothing but the database, all through ONE PgBouncer in transaction mode: the seed burst,
// the group-commit model check, keyed retries (also under killed server connections) and a mixed storm split across
// them, with exact outcomes.

const INSTANCES = 2
/** The seed figures: user 1 holds 10000, 10,000 × PATCH -2 → exactly 5000 × 200 and 5000 × 409. */
const BURST_REQUESTS = 10_000
const KEYS = 100
const STORM_USERS = 5
const STORM_OPENING = 1000
const STORM_OPERATIONS = 1500
const STORM_CONCURRENCY = 40
/** The model check of test/system/group-commit.test.ts: planned changes (≈ 1,630 requests with the repeated keys). */
const MODEL_CHECK_CHANGES = 1500
const MODEL_CHECK_IN_FLIGHT = 400
const RETRY_OPERATIONS = 400
const RETRY_CONCURRENCY = 40
/** Server connections killed every 50 ms until the last operation's first attempt is sent (at most 600 rounds, 30 s). */
const KILL_EVERY_MS = 50
const KILL_ROUNDS = 600

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
  // box a 10k burst's lock queue can pass the default 10 s (test/system/pgbouncer.test.ts proves the timeouts).
  const { apps, bases, db } = await behindPgBouncer(t, 'pgb_instances', {
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

  t.test('the group-commit model check split over both instances', async (t) => {
    const before = await Promise.all(apps.map(async (instance) => await batchMetrics(instance, 'advisory')))
    // At most MODEL_CHECK_IN_FLIGHT requests open at once (a socket each): enough for batches to form on both.
    let inFlight = 0
    const waiting: Array<() => void> = []
    await modelCheckStorm(t, app, 0x5eed + 100, MODEL_CHECK_CHANGES, async (index, body, key) => {
      if (inFlight >= MODEL_CHECK_IN_FLIGHT) await new Promise<void>((resolve) => waiting.push(resolve))
      inFlight += 1
      try {
        const answer = await fetch(`${bases[index % INSTANCES]!}/api/balance`, {
          method: 'PATCH',
          headers: { 'content-type': 'application/json', ...(key === undefined ? {} : { 'idempotency-key': key }) },
          body: JSON.stringify(body),
        }).catch((error: Error) => { throw new Error(`request ${index}: ${error.message} (${String(error.cause)})`) })
        return { status: answer.status, text: await answer.text(), replayed: answer.headers.get('idempotent-replayed') === 'true' }
      } finally {
        inFlight -= 1
        waiting.shift()?.()
      }
    })
    const after = await Promise.all(apps.map(async (instance) => await batchMetrics(instance, 'advisory')))
    for (const [i, batch] of after.entries()) {
      const changes = batch.sum - before[i]!.sum
      const statements = batch.count - before[i]!.count
      t.ok(changes > statements, `instance ${i + 1}: the storm's changes shared transactions (${changes} changes in ${statements} statements)`)
    }
  })

  t.test('keyed retries across instances while server connections are killed: exactly once', async (t) => {
    const admin = await connect(db.url)
    t.teardown(async () => { await admin.end() })
    const userId = (await send(bases[0]!, 'POST', '/api/users', { balance: 2000 })).body.id as number
    const operations = Array.from({ length: RETRY_OPERATIONS }, (_, index): Operation => index % 4 === 3
      ? { key: `pgb-retry-${index}`, method: 'POST', path: '/api/transfers', body: { fromUserId: userId, toUserId: 1, amount: 1 + (index % 9) }, legs: 2 }
      : { key: `pgb-retry-${index}`, method: 'PATCH', path: '/api/balance', body: { userId, amount: index % 3 === 0 ? 5 + (index % 7) : -(1 + (index % 40)) }, legs: 1 })
    // A first attempt goes to instance n % 2; a 503 is retried, with the same key, through the OTHER instance.
    const retriers = bases.map((base) => retryingClient(base))
    const killer = backendKiller(admin, KILL_EVERY_MS, KILL_ROUNDS)
    // The kills stop once every operation has been sent once, so the retries still in flight can converge.
    let killsStopped: Promise<number> | undefined
    const stopKills = async (): Promise<number> => await (killsStopped ??= killer.stop())
    const settled: Settled[] = []
    const firstAnswers: Record<string, number> = {}
    let retriedElsewhere = 0
    let next = 0
    await Promise.all(Array.from({ length: RETRY_CONCURRENCY }, async () => {
      while (next < operations.length) {
        const index = next++
        const operation = operations[index]!
        const sending = send(bases[index % INSTANCES]!, operation.method, operation.path, operation.body, operation.key)
        if (next >= operations.length) void stopKills()
        const first = await sending
        firstAnswers[first.status] = (firstAnswers[first.status] ?? 0) + 1
        if (first.status !== 503) {
          settled.push({ operation, final: first.status, attempts: 1, ambiguous: 0, replayedAfter503: false })
          continue
        }
        retriedElsewhere += 1
        settled.push(await retriers[(index + 1) % INSTANCES]!.untilAnswered(operation))
      }
    }))
    const terminated = await stopKills()
    const replayed = settled.filter((s) => s.replayedAfter503).length
    t.comment(`${terminated} server connections terminated; first answers ${JSON.stringify(firstAnswers)}; ${retriedElsewhere} retried on the other instance, ${replayed} of them found already committed (a replay)`)
    t.ok(terminated > 0 && retriedElsewhere > 0, 'the kills made first attempts fail, and those were retried on the other instance')
    t.same(Object.keys(firstAnswers).filter((status) => !['200', '201', '409', '503'].includes(status)), [], 'first answers are only 200, 201, 409 or 503')
    t.same(settled.filter(({ final }) => final !== 200 && final !== 201 && final !== 409), [], 'every operation ends with 200, 201 or 409')
    t.same(await exactlyOnceMismatches(admin, settled), [], 'each operation is in the journal exactly as often as its final answer says')
    const report = await checkBooksAfterFaults(app.sequelize)
    t.ok(report.ok, formatReport(report))
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
