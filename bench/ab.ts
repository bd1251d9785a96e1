import { execFile } from 'node:child_process'
import { mkdtemp, rm, symlink } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { promisify } from 'node:util'
import { createThrowawayDatabase, type ThrowawayDatabase } from '../src/tooling/throwaway-database.js'
import { startChildServer, watchProcess, type ChildServer } from '../src/tooling/processes.js'
import { projectRoot } from '../src/tooling/project-root.js'
import { burst, load } from './load.js'
import { floorScript } from './paths.js'

/**
 * Before and after a change to the hot path, on this machine, in one run: the production build of a git ref (default
 * HEAD: the last commit) against the build of the working tree, and the HTTP floor, each on its own throwaway
 * database, measured one at a time in alternating order, medians of the rounds:
 * - hot row: autocannon, 100 keep-alive connections, PATCH +1 on one user for --seconds: req/s and the server's CPU
 *   µs per request (user + system time of the process over the measurement ÷ responses);
 * - burst: --burst simultaneous PATCH +1 on one user, one fresh socket each: wall time, server CPU µs per request and
 *   peak RSS (VmHWM reset before).
 * With --keyed every request carries a unique Idempotency-Key. Absolute figures move with the machine's load; compare
 * the ratios, which are of one run.
 * Usage: npm run bench:ab [-- --ref <git ref> --rounds 5 --seconds 8 --burst 10000 --keyed]
 */

export interface AbOptions { ref: string, rounds: number, seconds: number, burst: number, keyed: boolean }

export function parseAbOptions (argv: string[]): AbOptions {
  const options: AbOptions = { ref: 'HEAD', rounds: 5, seconds: 8, burst: 10_000, keyed: false }
  for (let i = 0; i < argv.length; i += 1) {
    const flag = argv[i]
    if (flag === '--keyed') { options.keyed = true; continue }
    const value = argv[++i]
    if (value === undefined) throw new Error(`${flag} needs a value`)
    if (flag === '--ref') options.ref = value
    else if (flag === '--rounds') options.rounds = Number(value)
    else if (flag === '--seconds') options.seconds = Number(value)
    else if (flag === '--burst') options.burst = Number(value)
    else throw new Error(`unknown option ${flag} (known: --ref, --rounds, --seconds, --burst, --keyed)`)
  }
  if (!Number.isInteger(options.rounds) || options.rounds < 1 || options.rounds > 20) throw new Error('--rounds: 1..20')
  if (!Number.isInteger(options.seconds) || options.seconds < 1 || options.seconds > 120) throw new Error('--seconds: 1..120')
  if (!Number.isInteger(options.burst) || options.burst < 2 || options.burst > 20_000) throw new Error('--burst: 2..20000')
  return options
}

const run = promisify(execFile)
const TSC = path.join(projectRoot, 'node_modules', 'typescript', 'bin', 'tsc')
const targets = ['before', 'after', 'floor'] as const
type Target = typeof targets[number]

interface Figures { hotReqPerSec: number[], hotCpuUs: number[], burstWallMs: number[], burstCpuUs: number[], burstPeakRssMb: number[] }

/** A detached worktree of `ref` sharing this checkout's node_modules, built; removed by the returned function. */
async function buildRef (ref: string): Promise<{ root: string, remove: () => Promise<void> }> {
  const folder = await mkdtemp(path.join(os.tmpdir(), 'balance-ab-'))
  const root = path.join(folder, 'before')
  await run('git', ['worktree', 'add', '--detach', root, ref], { cwd: projectRoot })
  const remove = async (): Promise<void> => {
    await run('git', ['worktree', 'remove', '--force', root], { cwd: projectRoot }).catch(() => {})
    await rm(folder, { recursive: true, force: true })
  }
  try {
    await symlink(path.join(projectRoot, 'node_modules'), path.join(root, 'node_modules'), 'dir')
    await run(process.execPath, [TSC, '-p', 'tsconfig.build.json'], { cwd: root })
  } catch (error) {
    await remove()
    throw error
  }
  return { root, remove }
}

function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}

async function measureRound (server: ChildServer, options: AbOptions, figures: Figures, round: number): Promise<void> {
  let sequence = 0
  const keyed = options.keyed ? `ab-${process.pid}-${round}` : undefined
  const hotWatch = await watchProcess(server.pid)
  const hot = await load({
    url: server.url,
    connections: 100,
    seconds: options.seconds,
    body: () => ({ userId: 1, amount: 1 }),
    ...(keyed === undefined ? {} : { key: () => `${keyed}-hot-${++sequence}` }),
  })
  const hotUsage = await hotWatch.stop()
  if (hot.non2xx + hot.errors > 0) throw new Error(`${server.label}: ${hot.non2xx} non-2xx and ${hot.errors} errors on the hot row`)
  figures.hotReqPerSec.push(hot.reqPerSec)
  figures.hotCpuUs.push((hotUsage.cpuMs * 1000) / hot.responses)
  const burstWatch = await watchProcess(server.pid)
  const outcome = await burst(`${server.url}/api/balance`, options.burst, { userId: 1, amount: 1 }, keyed === undefined ? undefined : `${keyed}-burst`)
  const burstUsage = await burstWatch.stop()
  if (outcome.statuses['200'] !== options.burst) throw new Error(`${server.label}: burst answered ${JSON.stringify(outcome.statuses)} ${JSON.stringify(outcome.errors)}`)
  figures.burstWallMs.push(outcome.wallMs)
  figures.burstCpuUs.push((burstUsage.cpuMs * 1000) / options.burst)
  figures.burstPeakRssMb.push(burstUsage.peakRssMb)
}

export async function runAb (options: AbOptions, log: (line: string) => void): Promise<Record<Target, Figures>> {
  log(`building ${options.ref} and the working tree`)
  const before = await buildRef(options.ref)
  const databases: ThrowawayDatabase[] = []
  const servers: Partial<Record<Target, ChildServer>> = {}
  try {
    await run(process.execPath, [TSC, '-p', 'tsconfig.build.json'], { cwd: projectRoot })
    const scripts: Record<Target, string> = {
      before: path.join(before.root, 'dist', 'src', 'server.js'),
      after: path.join(projectRoot, 'dist', 'src', 'server.js'),
      floor: floorScript,
    }
    for (const target of targets) {
      const db = await createThrowawayDatabase(`ab-${target}`)
      databases.push(db)
      servers[target] = await startChildServer(target, scripts[target], { DATABASE_URL: db.url, LOG_LEVEL: 'warn' })
    }
    const figures = Object.fromEntries(targets.map((target) => [target, { hotReqPerSec: [], hotCpuUs: [], burstWallMs: [], burstCpuUs: [], burstPeakRssMb: [] }])) as unknown as Record<Target, Figures>
    // One unmeasured round warms every JIT; then rounds alternate the order so no target always goes first.
    const warmup: Figures = { hotReqPerSec: [], hotCpuUs: [], burstWallMs: [], burstCpuUs: [], burstPeakRssMb: [] }
    for (const target of targets) await measureRound(servers[target]!, { ...options, seconds: Math.min(options.seconds, 3) }, warmup, -1)
    for (let round = 0; round < options.rounds; round += 1) {
      const order = round % 2 === 0 ? targets : [...targets].reverse()
      for (const target of order) await measureRound(servers[target]!, options, figures[target], round)
      log(`round ${round + 1}/${options.rounds} done`)
    }
    return figures
  } finally {
    for (const server of Object.values(servers)) await server.stop()
    for (const db of databases) await db.drop()
    await before.remove()
  }
}

export function renderAb (options: AbOptions, figures: Record<Target, Figures>): string {
  const rows: Array<[string, keyof Figures, number]> = [
    ['hot row, req/s', 'hotReqPerSec', 0],
    ['hot row, server CPU µs per request', 'hotCpuUs', 1],
    ['burst, wall ms', 'burstWallMs', 0],
    ['burst, server CPU µs per request', 'burstCpuUs', 1],
    ['burst, server peak RSS MB', 'burstPeakRssMb', 0],
  ]
  const cell = (values: number[], digits: number): string =>
    `${median(values).toFixed(digits)} (${Math.min(...values).toFixed(digits)}–${Math.max(...values).toFixed(digits)})`
  return [
    `${options.keyed ? 'Keyed: a unique Idempotency-Key on every request. ' : ''}${options.rounds} rounds, medians (min–max); before = ${options.ref}, after = the working tree.`,
    '',
    '| figure | before | after | after ÷ before | floor | after ÷ floor |',
    '|---|---|---|---|---|---|',
    ...rows.map(([title, key, digits]) => {
      const [b, a, f] = [median(figures.before[key]), median(figures.after[key]), median(figures.floor[key])]
      return `| ${title} | ${cell(figures.before[key], digits)} | ${cell(figures.after[key], digits)} | ${(a / b).toFixed(2)} | ${cell(figures.floor[key], digits)} | ${(a / f).toFixed(2)} |`
    }),
  ].join('\n')
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const options = parseAbOptions(process.argv.slice(2))
  runAb(options, (line) => { process.stderr.write(line + '\n') })
    .then((figures) => { process.stdout.write(renderAb(options, figures) + '\n') })
    .catch((error: unknown) => { process.stderr.write(`${error instanceof Error ? error.stack ?? error.message : String(error)}\n`); process.exit(1) })
}
