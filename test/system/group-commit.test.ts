import type { Sequelize, Transaction } from 'sequelize'
import t from 'tap'
import { MAX_BALANCE, MIN_BALANCE } from '../../src/domain/money.js'
import { runBatch, type BatchAnswer, type BatchItem } from '../../src/strategies/batch.js'
import type { StrategyName } from '../../src/config.js'
import { Idempotency } from '../../src/services/idempotency.js'
import { formatReport } from '../../src/db/check-books.js'
import { build, checkBooksAfterFaults, listen, strategies } from '../helper.js'
import { backendKiller, connect, exactlyOnceMismatches, retryingClient, type Operation, type Settled } from '../support/retry.js'
import { assertBooksBalance, journal, newUser, request } from '../support/ledger.js'
import { batchMetrics, modelCheckStorm } from '../support/model-check.js'

/**
 * Group commit: changes to one user that arrive while its statement is in flight share the next
 * transaction, and every answer is still exactly one a one-at-a-time run could give.
 */

const TTL_HOURS = 24

for (const groupCommit of ['on', 'off'] as const) {
  for (const strategy of strategies) {
    t.test(`model check on a hot user: ${strategy}, group commit ${groupCommit}`, async (t) => {
      const { app } = await build(t, { strategy, env: { GROUP_COMMIT: groupCommit } })
      await modelCheckStorm(t, app, 0x5eed + strategies.indexOf(strategy), 1500)
      const batches = await batchMetrics(app, strategy)
      if (groupCommit === 'on') {
        t.ok(batches.sum > batches.count, `changes shared transactions: ${batches.sum} changes in ${batches.count} statements, largest ≤ ${batches.largest}`)
      } else {
        t.equal(batches.count, 0, 'group commit off sends no batch')
      }
    })
  }
}

/** Holds a user's lock from outside the service, the way its strategy takes it, until release(). */
async function holdUserLock (sequelize: Sequelize, strategy: StrategyName, userId: number): Promise<{ release: () => Promise<void> }> {
  const holder: Transaction = await sequelize.transaction()
  const lock = strategy === 'advisory'
    ? 'SELECT pg_advisory_xact_lock($1::bigint)'
    : 'SELECT id FROM users WHERE id = $1 FOR UPDATE'
  await sequelize.query(lock, { bind: [userId], transaction: holder })
  return { release: async () => { await holder.commit() } }
}

for (const strategy of strategies) {
  t.test(`${strategy}: a lone change goes alone; what queues behind it goes in arrival order, in batches up to the cap`, async (t) => {
    const { app } = await build(t, { strategy, env: { GROUP_COMMIT_MAX_BATCH: '4' } })
    const userId = await newUser(app, 100)
    const lock = await holdUserLock(app.sequelize, strategy, userId)
    // Called in one synchronous loop: each reaches group commit in this order before any I/O.
    const amounts = [1, 2, -3, 4, -500, 6, 7, -8, 9, 10]
    const settled = amounts.map(async (amount) => await app.balanceService.change({ userId, amount }).then(
      (applied) => ({ status: 'applied', balance: applied.balance }),
      (error: { code?: string, balance?: number }) => ({ status: error.code, balance: error.balance })))
    await new Promise((resolve) => setTimeout(resolve, 200))
    t.same(await batchMetrics(app, strategy), { count: 0, sum: 0, largest: 0 }, 'nothing has committed while the lock is held')
    await lock.release()
    const answers = await Promise.all(settled)

    // One at a time in arrival order: 100 +1 +2 -3 +4 (−500 refused at 104) +6 +7 −8 +9 +10.
    t.same(answers, [
      { status: 'applied', balance: 101 }, { status: 'applied', balance: 103 }, { status: 'applied', balance: 100 },
      { status: 'applied', balance: 104 }, { status: 'INSUFFICIENT_FUNDS', balance: 104 }, { status: 'applied', balance: 110 },
      { status: 'applied', balance: 117 }, { status: 'applied', balance: 109 }, { status: 'applied', balance: 118 },
      { status: 'applied', balance: 128 },
    ], 'each answer is the one a one-at-a-time run in arrival order gives')
    const changes = (await journal(app, userId)).filter((entry) => entry.kind === 'change')
    t.same(changes.map((entry) => entry.amount), [1, 2, -3, 4, 6, 7, -8, 9, 10], 'journal ids follow arrival order')
    t.same(changes.map((entry) => entry.balanceAfter), [101, 103, 100, 104, 110, 117, 109, 118, 128], 'balances after chain')
    // The lone first change, then the nine that queued behind it: 4 + 4 + 1 (a batch of one goes alone as well).
    t.same(await batchMetrics(app, strategy), { count: 4, sum: 10, largest: 4 }, 'statements of 1, 4, 4 and 1 changes')
    await assertBooksBalance(t, app)
  })
}

t.test('ledger_batch: deposits, refusals, replays and a reused key in one transaction', async (t) => {
  const { app } = await build(t)
  const userId = await newUser(app, 10)
  // A key whose outcome committed before the batch: the batch replays it.
  const earlier = await request(app, 'PATCH', '/api/balance', { userId, amount: 1 }, 'earlier')
  t.equal(earlier.statusCode, 200)
  const idempotency = new Idempotency(TTL_HOURS)
  const claimOf = (key: string, amount: number): BatchItem['claim'] => idempotency.claim(key, 'change', [userId, amount])
  const items: BatchItem[] = [
    { request: { userId, amount: 5 } }, // 11 → 16
    { request: { userId, amount: -20 }, claim: claimOf('k1', -20) }, // refused at 16, kept under k1
    { request: { userId, amount: -3 }, claim: claimOf('k2', -3) }, // 16 → 13
    { request: { userId, amount: -3 }, claim: claimOf('k2', -3) }, // the same key and request: replays the item above
    { request: { userId, amount: -4 }, claim: claimOf('k2', -4) }, // the same key, another request: reused
    { request: { userId, amount: 1 }, claim: claimOf('earlier', 1) }, // replays the committed outcome
    { request: { userId, amount: MAX_BALANCE } }, // refused: above the limit at 13
    { request: { userId, amount: -13 } }, // 13 → 0
    { request: { userId, amount: -1 } }, // refused at 0
  ]
  const answers: BatchAnswer[] = await runBatch(app.sequelize, 'advisory', items)
  const entries = (await journal(app, userId)).filter((entry) => entry.kind === 'change')
  const entryOf = (amount: number, after: number): number => entries.find((e) => e.amount === amount && e.balanceAfter === after)!.id
  const earlierEntry = (earlier.json() as { entryId: number }).entryId
  t.same(answers, [
    { keyed: false, outcome: { outcome: 'applied', balance: 16, entryId: entryOf(5, 16), available: 16 } },
    { keyed: true, result: { idempotency: 'executed', outcome: { outcome: 'insufficient_funds', balance: 16, available: 16 } } },
    { keyed: true, result: { idempotency: 'executed', outcome: { outcome: 'applied', balance: 13, entryId: entryOf(-3, 13), available: 13 } } },
    { keyed: true, result: { idempotency: 'replayed', outcome: { outcome: 'applied', balance: 13, entryId: entryOf(-3, 13), available: 13 } } },
    { keyed: true, result: { idempotency: 'reused' } },
    { keyed: true, result: { idempotency: 'replayed', outcome: { outcome: 'applied', balance: 11, entryId: earlierEntry, available: 11 } } },
    { keyed: false, outcome: { outcome: 'balance_limit_exceeded', balance: 13 } },
    { keyed: false, outcome: { outcome: 'applied', balance: 0, entryId: entryOf(-13, 0), available: 0 } },
    { keyed: false, outcome: { outcome: 'insufficient_funds', balance: 0, available: 0 } },
  ], 'each item answered as if alone, in order')
  t.same(entries.map((e) => [e.amount, e.balanceAfter, e.idempotencyKey]),
    [[1, 11, 'earlier'], [5, 16, null], [-3, 13, 'k2'], [-13, 0, null]], 'one entry per applied change, keyed ones tagged, ids in order')
  // The stored outcomes answer later requests exactly as the batch did.
  const k1 = await request(app, 'PATCH', '/api/balance', { userId, amount: -20 }, 'k1')
  t.equal(k1.statusCode, 409, 'k1 replays its refusal')
  t.match(k1.json(), { code: 'INSUFFICIENT_FUNDS', balance: 16 })
  t.equal(k1.headers['idempotent-replayed'], 'true')
  const k2 = await request(app, 'PATCH', '/api/balance', { userId, amount: -3 }, 'k2')
  t.same(k2.json(), { userId, balance: 13, amount: -3, entryId: entryOf(-3, 13), available: 13 }, 'k2 replays its change')
  await assertBooksBalance(t, app)
})

t.test('ledger_batch: an unknown user, an empty batch, and a batch under the row lock', async (t) => {
  const { app } = await build(t)
  t.same(await runBatch(app.sequelize, 'row', []), [], 'an empty batch is no statement')
  const missing = await runBatch(app.sequelize, 'row', [{ request: { userId: 999_999, amount: 5 } }, { request: { userId: 999_999, amount: -5 } }])
  t.same(missing, [{ keyed: false, outcome: { outcome: 'user_not_found' } }, { keyed: false, outcome: { outcome: 'user_not_found' } }])
  const userId = await newUser(app, 0)
  const row = await runBatch(app.sequelize, 'row', [{ request: { userId, amount: 7 } }, { request: { userId, amount: -7 } }])
  t.match(row, [{ outcome: { outcome: 'applied', balance: 7 } }, { outcome: { outcome: 'applied', balance: 0 } }])
  await t.rejects(runBatch(app.sequelize, 'advisory', [{ request: { userId, amount: 1 } }, { request: { userId: userId + 1, amount: 1 } }]),
    /a batch mixes users/, 'a batch is one user\'s')
  const [bounds] = await app.sequelize.query('SELECT 1 FROM ledger_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL, NULL)',
    { bind: ['advisory', userId, ['change', 'change'], [1, 2], [null, null], [null, null], [null, null], [null], [null, null], MIN_BALANCE, MAX_BALANCE] }).catch((error: Error) => [error.message])
  t.match(String(bounds), /invariant: ledger_batch got arrays of different lengths/, 'mismatched arrays are refused')
})

for (const strategy of strategies) {
  t.test(`${strategy}: pg_terminate_backend during batches: only 200, 409 or 503; keyed retries converge to exactly once`, async (t) => {
    const { app, db } = await build(t, { strategy, env: { DB_CONNECT_TIMEOUT_MS: '2000', DB_ACQUIRE_TIMEOUT_MS: '5000' } })
    const base = await listen(app)
    const admin = await connect(db.url)
    t.teardown(async () => { await admin.end() })
    const userId = await newUser(app, 2000)
    // 400 keyed changes to ONE user from 40 concurrent clients: batches form while the backends are being killed.
    const operations = Array.from({ length: 400 }, (_, index): Operation => ({
      key: `${strategy}-batch-${index}`,
      method: 'PATCH',
      path: '/api/balance',
      body: { userId, amount: index % 3 === 0 ? 5 + (index % 7) : -(1 + (index % 40)) },
      legs: 1,
    }))
    const killer = backendKiller(admin, 50, 60)
    const { untilAnswered } = retryingClient(base)
    const settled: Settled[] = []
    let next = 0
    const firstAnswers: Record<string, number> = {}
    await Promise.all(Array.from({ length: 40 }, async () => {
      while (next < operations.length) {
        const operation = operations[next]!
        next += 1
        const result = await untilAnswered(operation)
        const first = result.ambiguous > 0 ? '503 or lost' : String(result.final)
        firstAnswers[first] = (firstAnswers[first] ?? 0) + 1
        settled.push(result)
      }
    }))
    const terminated = await killer.stop()
    const finals = settled.map(({ final }) => final)
    t.ok(terminated > 0, `${terminated} backends terminated; first answers ${JSON.stringify(firstAnswers)}`)
    t.same(finals.filter((status) => status !== 200 && status !== 409), [], 'every operation ends with 200 or 409')
    t.same(Object.keys(firstAnswers).filter((first) => !['200', '409', '503 or lost'].includes(first)), [], 'no answer other than 200, 409, 503')
    t.same(await exactlyOnceMismatches(admin, settled), [], 'each change is in the journal exactly as often as its final answer says')
    const report = await checkBooksAfterFaults(app.sequelize)
    t.ok(report.ok, formatReport(report))
    const batches = await batchMetrics(app, strategy)
    t.ok(batches.sum > batches.count, `changes shared transactions: ${batches.sum} changes in ${batches.count} statements`)
  })
}
