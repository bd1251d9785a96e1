import type { FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import { build, books, listen, sql, strategies } from '../helper.js'
import { burst, burstRequests, type BurstRequest } from '../support/burst.js'
import { assertBooksBalance } from '../support/ledger.js'

/**
 * The seed burst with holds, for every strategy with group commit on and off, over real sockets: user 1 holds 10000;
 * 10,000 simultaneous POST /api/holds {userId: 1, amount: 2} → exactly 5000 × 201 and 5000 × 409, held 10000,
 * available 0, balance 10000. Then every hold is settled at once — half captured, half voided — with a duplicate
 * capture or void for some, and a capture racing a void for others: each hold ends in exactly one state, each
 * 200 names the state its hold ended in, balance = 10000 − 2 × captured, held 0.
 */
const REQUESTS = 10_000
const DUPLICATES = 250

interface Figures { balance: number, held: number, available: number }

async function figures (app: FastifyInstance): Promise<Figures> {
  const res = await app.inject('/api/users/1')
  const { balance, held, available } = res.json() as Figures
  return { balance, held, available }
}

/** The settle storm: capture the first half, void the second; duplicates and capture-vs-void races on top; shuffled. */
function settleStorm (ids: number[]): Array<BurstRequest & { holdId: number, action: 'capture' | 'void' }> {
  const half = ids.length / 2
  const capture = (holdId: number): BurstRequest & { holdId: number, action: 'capture' } => ({ method: 'POST', path: `/api/holds/${holdId}/capture`, body: {}, holdId, action: 'capture' })
  const voidIt = (holdId: number): BurstRequest & { holdId: number, action: 'void' } => ({ method: 'POST', path: `/api/holds/${holdId}/void`, holdId, action: 'void' })
  const requests = [
    ...ids.slice(0, half).map(capture),
    ...ids.slice(half).map(voidIt),
    ...ids.slice(0, DUPLICATES).map(capture),
    ...ids.slice(half, half + DUPLICATES).map(voidIt),
    ...ids.slice(DUPLICATES, 2 * DUPLICATES).map(voidIt),
    ...ids.slice(half + DUPLICATES, half + 2 * DUPLICATES).map(capture),
  ]
  // A fixed shuffle (an LCG), so a failure can be replayed.
  let state = 12345
  for (let i = requests.length - 1; i > 0; i -= 1) {
    state = (state * 1103515245 + 12345) % 2147483648
    const j = state % (i + 1)
    ;[requests[i], requests[j]] = [requests[j]!, requests[i]!]
  }
  return requests
}

async function checkSettled (t: Test, app: FastifyInstance, ids: number[], storm: ReturnType<typeof settleStorm>, answers: Array<[number, string | null]>): Promise<void> {
  const rows = await sql<{ id: string, status: string, captured: string }>(app, 'SELECT id, status, captured FROM holds WHERE user_id = 1 ORDER BY id')
  const state = new Map(rows.map((row) => [Number(row.id), row]))
  const winners = new Map<number, string>()
  const problems: string[] = []
  let refusals = 0
  storm.forEach(({ holdId, action }, index) => {
    const [status, code] = answers[index]!
    if (status === 200) {
      if (winners.has(holdId)) problems.push(`hold ${holdId}: two 200s (${winners.get(holdId)}, ${action})`)
      winners.set(holdId, action)
    } else if (status === 409 && code === 'HOLD_NOT_ACTIVE') {
      refusals += 1
    } else {
      problems.push(`hold ${holdId} ${action}: ${status} ${code}`)
    }
  })
  for (const id of ids) {
    const row = state.get(id)
    const expected = winners.get(id) === 'capture' ? 'captured' : winners.get(id) === 'void' ? 'voided' : 'no winner'
    if (row?.status !== expected) problems.push(`hold ${id}: ${row?.status} in the table, ${expected} by the answers`)
    if (row?.status === 'captured' && Number(row.captured) !== 2) problems.push(`hold ${id}: captured ${row.captured}`)
  }
  for (let i = 0; i < DUPLICATES; i += 1) {
    if (state.get(ids[i]!)?.status !== 'captured') problems.push(`hold ${ids[i]}: captured twice over, yet ${state.get(ids[i]!)?.status}`)
    if (state.get(ids[ids.length / 2 + i]!)?.status !== 'voided') problems.push(`hold ${ids[ids.length / 2 + i]}: voided twice over, yet not voided`)
  }
  t.same(problems, [], `each of ${ids.length} holds ended in exactly one state, the one its single 200 named`)
  t.equal(refusals, 4 * DUPLICATES, 'every second settlement of a hold is 409 HOLD_NOT_ACTIVE')
  const captured = rows.filter((row) => row.status === 'captured').length
  t.same(await figures(app), { balance: 10000 - 2 * captured, held: 0, available: 10000 - 2 * captured }, `balance 10000 − 2 × ${captured} captured, held 0`)
  t.same(await books(app, 1), { balance: 10000 - 2 * captured, journalSum: 10000 - 2 * captured, entries: 1 + captured }, 'one capture entry per captured hold')
  await assertBooksBalance(t, app)
}

for (const groupCommit of ['on', 'off'] as const) {
  for (const strategy of strategies) {
    t.test(`10,000 simultaneous holds of 2 on 10000, then every hold settled at once (${strategy}, group commit ${groupCommit})`, async (t) => {
      const { app } = await build(t, { strategy, env: { GROUP_COMMIT: groupCommit } })
      const base = await listen(app)

      const created = await burst(`${base}/api/holds`, REQUESTS, { userId: 1, amount: 2 }, undefined, 'POST')
      t.comment(`${strategy}, group commit ${groupCommit}: ${REQUESTS} holds in ${Math.round(created.wallMs)} ms, p99 ${Math.round(created.latencyMs.p99)} ms`)
      t.same(created.errors, {}, 'no connection error')
      t.same(created.statuses, { 201: 5000, 409: 5000 }, 'exactly 5000 × 201 and 5000 × 409')
      t.same(created.codes, { INSUFFICIENT_FUNDS: 5000 }, 'every 409 is INSUFFICIENT_FUNDS')
      t.same(await figures(app), { balance: 10000, held: 10000, available: 0 }, 'held 10000, available 0, balance 10000')
      const ids = (await sql<{ id: string }>(app, "SELECT id FROM holds WHERE user_id = 1 AND status = 'active' ORDER BY id")).map((row) => Number(row.id))
      t.equal(ids.length, 5000, '5000 active holds')

      const storm = settleStorm(ids)
      const settled = await burstRequests(base, storm)
      t.comment(`${storm.length} settlements in ${Math.round(settled.wallMs)} ms: ${JSON.stringify(settled.statuses)}`)
      t.same(settled.errors, {}, 'no connection error')
      await checkSettled(t, app, ids, storm, settled.answers)
    })
  }
}
