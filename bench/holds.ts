import { writeFile, mkdir } from 'node:fs/promises'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import autocannon from 'autocannon'
import pg from 'pg'
import { createThrowawayDatabase } from '../src/tooling/throwaway-database.js'
import { startChildServer, watchProcess, type ChildServer } from '../src/tooling/processes.js'
import { projectRoot, serverScript } from '../src/tooling/project-root.js'
import { burst, load, type BurstOutcome } from './load.js'
import { floorScript } from './paths.js'

/**
 * What holds cost, measured in one run next to plain changes and the HTTP floor (the same Fastify stack with
 * in-memory balances and holds), the advisory strategy with group commit on and off:
 * - the burst: 10,000 simultaneous POST /api/holds {amount: 2} on a user holding 10000 (exactly 5000 × 201) against
 *   the seed burst of PATCH −2 (exactly 5000 × 200), wall time of each;
 * - the hot row: one user, 100 keep-alive connections for N seconds: PATCH +1 (changes/s) against a hold then its
 *   capture on every connection (pairs/s: each pair is two requests and two writes under the user's lock).
 * Repetitions alternate the order; the report gives medians and the ratios of medians of one run.
 * Usage: npm run bench:holds [-- --reps 3 --seconds 10 --out bench/results/holds.json]
 */

export interface Options { reps: number, seconds: number, burst: number, connections: number, out: string, databaseUrl: string | undefined }

export function parseHoldsOptions (argv: string[]): Options {
  const options: Options = { reps: 3, seconds: 10, burst: 10_000, connections: 100, out: 'bench/results/holds.json', databaseUrl: process.env.DATABASE_URL }
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]]
    if (flag === '--reps') options.reps = Number(value)
    else if (flag === '--seconds') options.seconds = Number(value)
    else if (flag === '--burst') options.burst = Number(value)
    else if (flag === '--out') options.out = String(value)
    else throw new Error(`unknown option ${flag}`)
  }
  if (!Number.isInteger(options.reps) || options.reps < 1 || options.reps > 20) throw new Error('--reps: 1..20')
  if (!(options.seconds >= 1 && options.seconds <= 120)) throw new Error('--seconds: 1..120')
  if (!Number.isInteger(options.burst) || options.burst < 2 || options.burst > 50_000 || options.burst % 2 !== 0) throw new Error('--burst: even, 2..50000')
  return options
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/** Half the burst succeeds (`ok`), half is 409 INSUFFICIENT_FUNDS, no connection error; otherwise a failure. */
function expectBurst (outcome: BurstOutcome, count: number, ok: number, label: string, failures: string[]): void {
  const half = count / 2
  if (outcome.statuses[String(ok)] !== half || outcome.statuses['409'] !== half || outcome.codes.INSUFFICIENT_FUNDS !== half || Object.keys(outcome.errors).length > 0) {
    failures.push(`${label}: ${JSON.stringify(outcome.statuses)} ${JSON.stringify(outcome.errors)}`)
  }
}

export interface HoldsBenchReport {
  when: string
  options: Omit<Options, 'databaseUrl'>
  figures: Record<string, number[]>
  medians: Record<string, number>
  ratios: Record<string, number>
  failures: string[]
}

/** A user holding `balance`, made directly in the database (as POST /api/users would). */
async function freshUser (admin: pg.Client, balance: number): Promise<number> {
  const { rows } = await admin.query<{ result: { id: number } }>('SELECT result FROM user_create($1, NULL, NULL, NULL, NULL)', [balance])
  return rows[0]!.result.id
}

/** 100 connections, each: POST a hold of 1, then capture it; pairs per second. */
async function holdCapturePairs (url: string, userId: number, connections: number, seconds: number): Promise<{ pairsPerSec: number, non2xx: number }> {
  const result = await autocannon({
    url,
    connections,
    duration: seconds,
    requests: [
      {
        method: 'POST',
        path: '/api/holds',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ userId, amount: 1 }),
        onResponse: (_status: number, body: string, context: Record<string, unknown>) => { context.holdId = (JSON.parse(body) as { holdId: number }).holdId },
      },
      {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        setupRequest: (request: Record<string, unknown>, context: Record<string, unknown>) => ({ ...request, path: `/api/holds/${String(context.holdId)}/capture`, body: '{}' }),
      },
    ],
  } as autocannon.Options)
  return { pairsPerSec: result['2xx'] / 2 / result.duration, non2xx: result.non2xx + result.errors }
}

/** Every measurement, with its invariant checks; writes `options.out` (JSON) and returns the report. */
export async function runHoldsBench (options: Options, log: (line: string) => void = (line) => { process.stderr.write(line + '\n') }): Promise<HoldsBenchReport> {
  const db = await createThrowawayDatabase('bench_holds', options.databaseUrl)
  const admin = new pg.Client({ connectionString: db.url })
  const servers: ChildServer[] = []
  const figures: Record<string, number[]> = {}
  const failures: string[] = []
  const note = (name: string, value: number): void => { (figures[name] ??= []).push(value) }
  try {
    const floor = await startChildServer('HTTP floor', floorScript, { LOG_LEVEL: 'warn' })
    servers.push(floor)
    const services: Record<string, ChildServer> = {}
    for (const groupCommit of ['on', 'off']) {
      services[groupCommit] = await startChildServer(`service (group commit ${groupCommit})`, serverScript, { DATABASE_URL: db.url, GROUP_COMMIT: groupCommit, LOG_LEVEL: 'warn' })
      servers.push(services[groupCommit]!)
    }
    await admin.connect()
    const hotUser = await freshUser(admin, 1_000_000_000_000)
    for (let rep = 1; rep <= options.reps; rep += 1) {
      const order = rep % 2 === 1 ? ['on', 'off'] : ['off', 'on']
      for (const kind of rep % 2 === 1 ? ['change', 'hold'] : ['hold', 'change']) {
        await fetch(`${floor.url}/bench/reset`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ userId: 1, balance: options.burst }) })
        const floorBurst = kind === 'change'
          ? await burst(`${floor.url}/api/balance`, options.burst, { userId: 1, amount: -2 })
          : await burst(`${floor.url}/api/holds`, options.burst, { userId: 1, amount: 2 }, undefined, 'POST')
        expectBurst(floorBurst, options.burst, kind === 'change' ? 200 : 201, `floor ${kind} burst`, failures)
        note(`floor ${kind} burst ms`, floorBurst.wallMs)
        for (const groupCommit of order) {
          const service = services[groupCommit]!
          const userId = await freshUser(admin, options.burst)
          const watch = await watchProcess(service.pid)
          const outcome = kind === 'change'
            ? await burst(`${service.url}/api/balance`, options.burst, { userId, amount: -2 })
            : await burst(`${service.url}/api/holds`, options.burst, { userId, amount: 2 }, undefined, 'POST')
          const usage = await watch.stop()
          expectBurst(outcome, options.burst, kind === 'change' ? 200 : 201, `${kind} burst, group commit ${groupCommit}`, failures)
          note(`${kind} burst ms, group commit ${groupCommit}`, outcome.wallMs)
          note(`${kind} burst peak RSS MB, group commit ${groupCommit}`, usage.peakRssMb)
        }
      }
      for (const groupCommit of order) {
        const service = services[groupCommit]!
        const changes = await load({ url: service.url, connections: options.connections, seconds: options.seconds, body: () => ({ userId: hotUser, amount: 1 }) })
        if (changes.non2xx + changes.errors > 0) failures.push(`hot changes, group commit ${groupCommit}: ${changes.non2xx} non-2xx, ${changes.errors} errors`)
        note(`hot row changes/s, group commit ${groupCommit}`, changes.reqPerSec)
        const pairs = await holdCapturePairs(service.url, hotUser, options.connections, options.seconds)
        if (pairs.non2xx > 0) failures.push(`hold → capture, group commit ${groupCommit}: ${pairs.non2xx} non-2xx or errors`)
        note(`hot row hold → capture pairs/s, group commit ${groupCommit}`, pairs.pairsPerSec)
      }
      log(`bench:holds rep ${rep}/${options.reps} done`)
    }
  } finally {
    await Promise.allSettled(servers.map(async (server) => { await server.stop() }))
    await admin.end().catch(() => {})
    await db.drop()
  }
  const medians = Object.fromEntries(Object.entries(figures).map(([name, values]) => [name, median(values)]))
  const ratios: Record<string, number> = {}
  for (const gc of ['on', 'off']) {
    ratios[`hold burst ÷ floor hold burst, group commit ${gc}`] = medians[`hold burst ms, group commit ${gc}`]! / medians['floor hold burst ms']!
    ratios[`change burst ÷ floor change burst, group commit ${gc}`] = medians[`change burst ms, group commit ${gc}`]! / medians['floor change burst ms']!
    ratios[`hold burst ÷ change burst, group commit ${gc}`] = medians[`hold burst ms, group commit ${gc}`]! / medians[`change burst ms, group commit ${gc}`]!
    ratios[`hold + capture ÷ one change (time per operation on the hot row), group commit ${gc}`] = medians[`hot row changes/s, group commit ${gc}`]! / medians[`hot row hold → capture pairs/s, group commit ${gc}`]!
  }
  const { databaseUrl: _url, ...shown } = options
  const report: HoldsBenchReport = { when: new Date().toISOString(), options: shown, figures, medians, ratios, failures }
  await mkdir(path.dirname(path.resolve(projectRoot, options.out)), { recursive: true })
  await writeFile(path.resolve(projectRoot, options.out), JSON.stringify(report, null, 2) + '\n')
  return report
}

async function main (): Promise<void> {
  const options = parseHoldsOptions(process.argv.slice(2))
  const { medians, ratios, failures } = await runHoldsBench(options)
  const lines = ['| figure (median of ' + String(options.reps) + ') | value |', '|---|---|',
    ...Object.entries(medians).map(([name, value]) => `| ${name} | ${Math.round(value)} |`),
    ...Object.entries(ratios).map(([name, value]) => `| ${name} | ${value.toFixed(2)}× |`)]
  process.stdout.write(lines.join('\n') + '\n' + (failures.length === 0 ? 'all invariants held\n' : `FAILURES:\n${failures.join('\n')}\n`))
  if (failures.length > 0) process.exitCode = 1
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await main()
