import { pathToFileURL } from 'node:url'
import autocannon from 'autocannon'
import pg from 'pg'
import { createThrowawayDatabase } from '../src/tooling/throwaway-database.js'
import { startChildServer } from '../src/tooling/processes.js'
import { serverScript } from '../src/tooling/project-root.js'

/**
 * What POST /api/balance/batch buys over single PATCHes, in one run on one service (advisory, group commit on):
 * the same 10,000 deposits over 1,000 users, sent as 10,000 PATCH /api/balance over `--connections` keep-alive
 * connections, and as 100 bulk requests of 100 changes each (default mode: each change answered on its own) over
 * `--bulk-connections`. Changes per second of each (wall time of the whole send), repetitions alternating the order,
 * medians and their ratio. Every answer must be a 200 and every change applied (checked in the database).
 * Usage: npx tsc -p tsconfig.bench.json && node dist/bench/bulk.js [--reps 3 --connections 100 --bulk-connections 10]
 */

interface Options { reps: number, connections: number, bulkConnections: number, users: number, changes: number, perRequest: number }

function parse (argv: string[]): Options {
  const options: Options = { reps: 3, connections: 100, bulkConnections: 10, users: 1000, changes: 10_000, perRequest: 100 }
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], Number(argv[i + 1])]
    if (flag === '--reps') options.reps = value
    else if (flag === '--connections') options.connections = value
    else if (flag === '--bulk-connections') options.bulkConnections = value
    else throw new Error(`unknown option ${String(flag)}`)
  }
  if (!Number.isInteger(options.reps) || options.reps < 1 || options.reps > 20) throw new Error('--reps: 1..20')
  return options
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/** `amount` requests over `connections` keep-alive connections; each request's body from `body(i)`. */
async function send (url: string, path: string, method: 'PATCH' | 'POST', connections: number, amount: number, body: (i: number) => unknown): Promise<{ seconds: number, non2xx: number }> {
  let next = 0
  const started = performance.now()
  const result = await autocannon({
    url: url + path,
    connections,
    amount,
    requests: [{ method, path, headers: { 'content-type': 'application/json' }, setupRequest: (request) => ({ ...request, body: JSON.stringify(body(next++)) }) }],
  })
  return { seconds: (performance.now() - started) / 1000, non2xx: result.non2xx + result.errors + result.timeouts }
}

async function main (): Promise<void> {
  const options = parse(process.argv.slice(2))
  const db = await createThrowawayDatabase('bench_bulk', process.env.DATABASE_URL)
  const admin = new pg.Client({ connectionString: db.url })
  const server = await startChildServer('service', serverScript, { DATABASE_URL: db.url, GROUP_COMMIT: 'on', LOG_LEVEL: 'warn' })
  const figures: Record<string, number[]> = { 'single PATCH changes/s': [], 'bulk changes/s': [] }
  const failures: string[] = []
  try {
    await admin.connect()
    const { rows } = await admin.query<{ id: string }>('SELECT (user_create(0, NULL, NULL, NULL, NULL)).result->>\'id\' AS id FROM generate_series(1, $1)', [options.users])
    const users = rows.map((row) => Number(row.id))
    const user = (i: number): number => users[i % users.length]!
    const total = async (): Promise<number> => Number((await admin.query<{ n: string }>('SELECT count(*) AS n FROM journal_entries')).rows[0]!.n)
    for (let rep = 1; rep <= options.reps; rep += 1) {
      for (const kind of rep % 2 === 1 ? ['single', 'bulk'] : ['bulk', 'single']) {
        const before = await total()
        const run = kind === 'single'
          ? await send(server.url, '/api/balance', 'PATCH', options.connections, options.changes, (i) => ({ userId: user(i), amount: 1 }))
          : await send(server.url, '/api/balance/batch', 'POST', options.bulkConnections, options.changes / options.perRequest,
            (i) => ({ changes: Array.from({ length: options.perRequest }, (_, k) => ({ userId: user(i * options.perRequest + k), amount: 1 })) }))
        const applied = await total() - before
        if (run.non2xx > 0 || applied !== options.changes) failures.push(`${kind} rep ${rep}: ${run.non2xx} non-2xx, ${applied} of ${options.changes} applied`)
        figures[kind === 'single' ? 'single PATCH changes/s' : 'bulk changes/s']!.push(options.changes / run.seconds)
      }
      process.stderr.write(`bench:bulk rep ${rep}/${options.reps} done\n`)
    }
  } finally {
    await server.stop()
    await admin.end().catch(() => {})
    await db.drop()
  }
  const single = median(figures['single PATCH changes/s']!)
  const bulk = median(figures['bulk changes/s']!)
  process.stdout.write(JSON.stringify({ options, figures }) + '\n' +
    `| figure (median of ${options.reps}) | value |\n|---|---|\n| single PATCH changes/s | ${Math.round(single)} |\n| bulk changes/s | ${Math.round(bulk)} |\n| bulk ÷ single | ${(bulk / single).toFixed(1)}× |\n` +
    (failures.length === 0 ? 'all changes applied, every answer 200\n' : `FAILURES:\n${failures.join('\n')}\n`))
  if (failures.length > 0) process.exitCode = 1
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await main()
