import type { FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import { createStrategy } from '../../src/strategies/index.js'
import { decodeBatchItem, executeBatch } from '../../src/strategies/batch.js'
import { GroupCommit, type BatchRunner } from '../../src/strategies/group-commit.js'
import type { ChangeOutcome } from '../../src/strategies/types.js'
import { build } from '../helper.js'
import { holdLock } from '../support/locks.js'
import { assertBooksBalance, balanceOf, journal, newUser, request } from '../support/ledger.js'

/**
 * Group commit never sends a change again unless its transaction is known to have rolled back. Each test holds the
 * user's advisory lock from a connection of its own, so that +1 goes alone and blocks, +10 and +100 queue behind it
 * and then go together as one batch: the failure is injected into that batch.
 */

const AMOUNTS = [1, 10, 100]


async function changes (app: FastifyInstance, userId: number): Promise<number[]> {
  return (await journal(app, userId)).filter((entry) => entry.kind === 'change').map((entry) => entry.amount)
}

type Settled = { ok: true, outcome: ChangeOutcome } | { ok: false, message: string }

/** The three changes through `gc` behind the held lock, in arrival order; settled once the lock is released. */
async function runThree (t: Test, app: FastifyInstance, url: string, gc: GroupCommit, userId: number): Promise<Settled[]> {
  const release = await holdLock(t, url, userId)
  const settled = AMOUNTS.map(async (amount) => await gc.change({ userId, amount }).then(
    (outcome): Settled => ({ ok: true, outcome }),
    (error: Error): Settled => ({ ok: false, message: error.message })))
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.equal(gc.waiting, 2, '+10 and +100 wait for the batch behind the lone +1')
  await release()
  return await Promise.all(settled)
}

function groupCommit (app: FastifyInstance, runner: Partial<BatchRunner>): GroupCommit {
  const inner = createStrategy('advisory', app.sequelize)
  return new GroupCommit(inner, {
    execute: async (items) => await executeBatch(app.sequelize, inner.batchLock, items),
    decode: decodeBatchItem,
    ...runner,
  }, { maxBatch: 512, maxWaitingPerUser: 100, maxWaiting: 100, waitTimeoutMs: 30_000 })
}

t.test('an observer that throws after the commit re-runs nothing and fails no request', async (t) => {
  const { app, db } = await build(t)
  const userId = await newUser(app, 0)
  app.balanceService.observe({
    batchFinished: () => { throw new Error('injected: the observer failed after the commit') },
    changeFinished: () => {},
  })
  const release = await holdLock(t, db.url, userId)
  const replies = AMOUNTS.map(async (amount) => await request(app, 'PATCH', '/api/balance', { userId, amount }))
  await new Promise((resolve) => setTimeout(resolve, 200))
  await release()
  const answers = (await Promise.all(replies)).map((reply) => ({ status: reply.statusCode, body: reply.json() as { balance?: number } }))
  t.same(answers.map((answer) => [answer.status, answer.body.balance]), [[200, 1], [200, 11], [200, 111]],
    'each change answered from what committed')
  t.same(await changes(app, userId), AMOUNTS, 'exactly three journal entries, one per change')
  t.equal(await balanceOf(app, userId), 111, 'the balance is +111, not +221')
  await assertBooksBalance(t, app)
})

t.test('a failure after the batch committed answers its requests with that error and sends nothing again', async (t) => {
  const { app, db } = await build(t)
  const userId = await newUser(app, 0)
  const gc = groupCommit(app, {
    execute: async (items) => {
      await executeBatch(app.sequelize, 'advisory', items)
      throw new Error('injected: lost after the commit')
    },
  })
  const settled = await runThree(t, app, db.url, gc, userId)
  t.match(settled, [
    { ok: true, outcome: { outcome: 'applied', balance: 1 } },
    { ok: false, message: 'injected: lost after the commit' },
    { ok: false, message: 'injected: lost after the commit' },
  ], 'the batch\'s two requests fail with the error, never re-run')
  t.same(await changes(app, userId), AMOUNTS, 'the batch committed once: three entries')
  t.equal(await balanceOf(app, userId), 111)
  await assertBooksBalance(t, app)
})

t.test('a row that cannot be decoded fails its own request only; the committed batch is never re-run', async (t) => {
  const { app, db } = await build(t)
  const userId = await newUser(app, 0)
  const gc = groupCommit(app, {
    decode: (items, rows, index) => {
      if (index === 0) throw new Error('injected: toSafeInteger refused the row')
      return decodeBatchItem(items, rows, index)
    },
  })
  const settled = await runThree(t, app, db.url, gc, userId)
  t.same(settled.map((s) => s.ok ? s.outcome.outcome === 'applied' && s.outcome.balance : s.message),
    [1, 'injected: toSafeInteger refused the row', 111], 'the +100 behind the undecodable row still gets its own answer')
  t.same(await changes(app, userId), AMOUNTS, 'three entries')
  t.equal(await balanceOf(app, userId), 111)
  await assertBooksBalance(t, app)
})

t.test('PostgreSQL refused the batch statement (rolled back): each change is run alone, once', async (t) => {
  const { app, db } = await build(t)
  const userId = await newUser(app, 0)
  let refused = 0
  const gc = groupCommit(app, {
    execute: async () => {
      refused += 1
      // A real error PostgreSQL raises for the statement (22012 division_by_zero): its transaction rolled back.
      await app.sequelize.query('SELECT 1 / 0')
      throw new Error('unreachable')
    },
  })
  const settled = await runThree(t, app, db.url, gc, userId)
  t.equal(refused, 1, 'one batch statement was refused')
  t.same(settled.map((s) => s.ok && s.outcome.outcome === 'applied' ? s.outcome.balance : s), [1, 11, 111], 'each applied alone, in order')
  t.same(await changes(app, userId), AMOUNTS, 'exactly three entries')
  await assertBooksBalance(t, app)
})

t.test('a statement cut by a timeout (its commit unknown) is answered with that error, never re-run', async (t) => {
  const { app, db } = await build(t)
  const userId = await newUser(app, 0)
  const gc = groupCommit(app, {
    execute: async () => {
      // 57014: PostgreSQL cancelled it; counted with the lost connections, where a commit may have happened.
      await app.sequelize.transaction(async (transaction) => {
        await app.sequelize.query('SET LOCAL statement_timeout = 10', { transaction })
        await app.sequelize.query('SELECT pg_sleep(1)', { transaction })
      })
      throw new Error('unreachable')
    },
  })
  const settled = await runThree(t, app, db.url, gc, userId)
  t.match(settled, [{ ok: true }, { ok: false, message: /statement timeout/ }, { ok: false, message: /statement timeout/ }])
  t.same(await changes(app, userId), [1], 'only the lone change applied; the batch was not sent again')
  await assertBooksBalance(t, app)
})
