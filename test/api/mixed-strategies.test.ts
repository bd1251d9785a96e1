import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { createThrowawayDatabase } from '../../src/tooling/throwaway-database.js'
import type { StrategyName } from '../../src/config.js'
import { build, strategies } from '../helper.js'
import { assertBooksBalance, balanceOf, journal, newUser, request } from '../support/ledger.js'

// Two instances with different BALANCE_STRATEGY on ONE database (a rolling change of the setting): every change
// either instance acknowledges is in the balance, the journal's running balance chains, and nothing deadlocks.
// Before the advisory paths took the row lock, an advisory change could overwrite a row-lock or atomic change that
// committed between its read and its write (balance below Σ journal).

const CHANGES = 600
const OPENING = 5_000
/** Deposits and withdrawals of different sizes, so that any lost update shows in the sum. */
const amountOf = (i: number): number => (i % 3 === 0 ? -(1 + (i % 7)) : 1 + (i % 11))

interface Pair { a: StrategyName, b: StrategyName }
const pairs: Pair[] = []
for (const [i, a] of strategies.entries()) for (const b of strategies.slice(i + 1)) pairs.push({ a, b })

async function storm (apps: FastifyInstance[], users: number[]): Promise<{ statuses: Record<number, number>, applied: Map<number, number[]> }> {
  const statuses: Record<number, number> = {}
  const applied = new Map<number, number[]>(users.map((user) => [user, []]))
  await Promise.all(Array.from({ length: CHANGES }, async (_, i) => {
    const app = apps[i % apps.length]!
    const userId = users[Math.floor(i / apps.length) % users.length]!
    const res = i % 10 === 9
      // Transfers between the two users both ways, through both instances: the locks of all strategies in one order.
      ? await request(app, 'POST', '/api/transfers', { fromUserId: users[i % 2]!, toUserId: users[(i + 1) % 2]!, amount: 3 })
      : await request(app, 'PATCH', '/api/balance', { userId, amount: amountOf(i) })
    statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1
    if (res.statusCode === 200) applied.get(userId)!.push((res.json() as { entryId: number }).entryId)
  }))
  return { statuses, applied }
}

for (const groupCommit of ['on', 'off'] as const) {
  for (const { a, b } of pairs) {
    t.test(`${a} and ${b} instances on one database, group commit ${groupCommit}: no change lost, none doubled`, async (t) => {
      const db = await createThrowawayDatabase(`mix-${a}-${b}-${groupCommit}`)
      t.teardown(db.drop)
      const env = { GROUP_COMMIT: groupCommit, DB_POOL_MAX: '8' }
      const first = await build(t, { strategy: a, database: db, env })
      const second = await build(t, { strategy: b, database: db, env })
      const users = [await newUser(first.app, OPENING), await newUser(first.app, OPENING)]

      const { statuses, applied } = await storm([first.app, second.app], users)
      const answered = Object.values(statuses).reduce((sum, n) => sum + n, 0)
      t.equal(answered, CHANGES, 'every request answered')
      t.same(Object.keys(statuses).filter((status) => !['200', '201', '409'].includes(status)), [], `only 200/201/409 (${JSON.stringify(statuses)})`)

      for (const user of users) {
        const entries = await journal(first.app, user)
        const ids = new Set(entries.map((entry) => entry.id))
        t.ok(applied.get(user)!.every((id) => ids.has(id)), `user ${user}: every acknowledged change is in the journal`)
        t.equal(await balanceOf(first.app, user), entries.reduce((sum, entry) => sum + entry.amount, 0), `user ${user}: balance = Σ journal`)
        let running = 0
        const broken = entries.filter((entry) => {
          running += entry.amount
          return entry.balanceAfter !== running
        })
        t.same(broken, [], `user ${user}: each balance_after = the previous one + its amount, in id order`)
      }
      await assertBooksBalance(t, first.app)
    })
  }
}
