import { createThrowawayDatabase } from '../src/tooling/throwaway-database.js'
import { startPgBouncer } from '../src/tooling/pgbouncer.js'
import { startChildServer, type ChildServer } from '../src/tooling/processes.js'
import { serverScript } from '../src/tooling/project-root.js'
import { load, type LoadOutcome } from './load.js'

/**
 * Hot-row req/s of the built service connected directly vs behind PgBouncer 1.18 (transaction mode), measured side
 * by side in alternating rounds on one throwaway database: autocannon, `connections` keep-alive connections PATCHing
 * +1 on user 1 for `seconds` each round. Needs the build (`npm run build`) and /usr/sbin/pgbouncer.
 *   node dist/bench/pgbouncer.js [rounds=3] [seconds=10] [connections=100]
 */
const [rounds = 3, seconds = 10, connections = 100] = process.argv.slice(2).map(Number)

const db = await createThrowawayDatabase('pgb_bench')
const target = new URL(db.url)
const bouncer = await startPgBouncer({ host: target.hostname, port: Number(target.port), poolSize: 10 })
const servers: ChildServer[] = []
try {
  const common = { LOG_LEVEL: 'warn', METRICS_ENABLED: 'false' }
  servers.push(await startChildServer('direct', serverScript, { ...common, DATABASE_URL: db.url, DB_POOLER: 'none' }))
  servers.push(await startChildServer('pgbouncer', serverScript, { ...common, DATABASE_URL: bouncer.via(db.url), DB_POOLER: 'pgbouncer-transaction' }))
  const results: Record<string, LoadOutcome[]> = { direct: [], pgbouncer: [] }
  await load({ url: servers[0]!.url, connections, seconds: 2, body: () => ({ userId: 1, amount: 1 }) }) // warm-up
  await load({ url: servers[1]!.url, connections, seconds: 2, body: () => ({ userId: 1, amount: 1 }) })
  for (let round = 0; round < rounds!; round += 1) {
    for (const server of round % 2 === 0 ? servers : [...servers].reverse()) {
      const outcome = await load({ url: server.url, connections: connections!, seconds: seconds!, body: () => ({ userId: 1, amount: 1 }) })
      results[server.label]!.push(outcome)
      console.log(`${server.label}: ${Math.round(outcome.reqPerSec)} req/s, p50 ${outcome.p50Ms} ms, p99 ${outcome.p99Ms} ms, non-2xx ${outcome.non2xx}, errors ${outcome.errors}`)
    }
  }
  const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!
  for (const [label, outcomes] of Object.entries(results)) {
    console.log(`${label}: median ${Math.round(median(outcomes.map((o) => o.reqPerSec)))} req/s over ${outcomes.length} × ${seconds} s (c=${connections})`)
  }
} finally {
  for (const server of servers) await server.stop()
  await bouncer.stop()
  await db.drop()
}
