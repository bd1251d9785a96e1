import t from 'tap'
import { build, books, listen, sql, strategies } from './helper.js'
import { burst } from './support/burst.js'

// The seed scenario: user 1 holds 10000; 10,000 simultaneous PATCH -2 over real sockets to a listening server.
const REQUESTS = 10_000

for (const strategy of strategies) {
  t.test(`10,000 simultaneous PATCH -2 on 10000 (${strategy})`, async (t) => {
    const { app } = await build(t, { strategy })
    const base = await listen(app)
    const before = await books(app, 1)
    t.same(before, { balance: 10000, journalSum: 10000, entries: 1 }, 'seeded user 1 with its opening entry')

    const result = await burst(`${base}/api/balance`, REQUESTS, { userId: 1, amount: -2 })
    t.comment(`${strategy}: ${REQUESTS} requests in ${Math.round(result.wallMs)} ms, p99 ${Math.round(result.latencyMs.p99)} ms`)

    t.same(result.errors, {}, 'no connection error')
    t.same(result.statuses, { 200: 5000, 409: 5000 }, 'exactly 5000 × 200 and 5000 × 409')
    t.same(result.codes, { INSUFFICIENT_FUNDS: 5000 }, 'every 409 is INSUFFICIENT_FUNDS')
    t.same(await books(app, 1), { balance: 0, journalSum: 0, entries: 5001 }, 'balance 0, Σ journal = balance, 5000 new entries')
    const [negative] = await sql<{ n: string }>(app, 'SELECT count(*) AS n FROM journal_entries WHERE balance_after < 0')
    t.equal(Number(negative?.n), 0, 'no journal entry shows a negative balance')
    const [distinct] = await sql<{ n: string }>(app, 'SELECT count(DISTINCT balance_after) AS n FROM journal_entries WHERE user_id = 1 AND kind = \'change\'')
    t.equal(Number(distinct?.n), 5000, 'every applied change saw a distinct balance: none lost, none applied twice')
  })
}
