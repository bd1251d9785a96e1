import { parseArgs } from 'node:util'
import path from 'node:path'
import type { StrategyName } from '../src/config.js'
import { strategyNames } from '../src/strategies/index.js'
import { projectRoot } from '../src/tooling/project-root.js'

/**
 * ceilings: the database alone (one commit per change, and the batch SQL at several batch sizes), no HTTP;
 * keyed-burst: the burst with a unique Idempotency-Key on every request.
 */
export const scenarioNames = ['ceilings', 'burst', 'keyed-burst', 'hot', 'spread'] as const
export type ScenarioName = typeof scenarioNames[number]

/** GROUP_COMMIT of the service: on batches the changes that queue for one user; off is one transaction per change. */
export const groupCommitModes = ['on', 'off'] as const
export type GroupCommitMode = typeof groupCommitModes[number]

/** Largest batch the batched database ceiling may try (GROUP_COMMIT_MAX_BATCH's range). */
export const MAX_BATCH_SIZE = 4096

/** Everything one bench run needs to know; the CLI flags map onto it one to one. */
export interface BenchOptions {
  quick: boolean
  strategies: StrategyName[]
  scenarios: ScenarioName[]
  /** GROUP_COMMIT values to measure each strategy's service with (a service per strategy and value). */
  groupCommit: GroupCommitMode[]
  /** GROUP_COMMIT_MAX_BATCH of the services. */
  maxBatch: number
  /** Batch sizes of the batched database ceiling (the batch SQL straight through pg, one caller). */
  batchSizes: number[]
  /** Seconds of each batched-ceiling measurement. */
  batchSeconds: number
  /** Simultaneous requests of the burst (user 1 starts with this many units, each request takes 2: half succeed). */
  burst: number
  repetitions: number
  /** Seconds of each hot/spread load (service, floor and ceiling alike). */
  loadSeconds: number
  /** Seconds of unmeasured load that warm each server's JIT before its first measurement. */
  warmupSeconds: number
  /** autocannon connections; also the number of async workers driving the database ceiling. */
  connections: number
  /** Users of the spread scenario. */
  spreadUsers: number
  /** DB_POOL_MAX of the service and max of the ceiling's pg.Pool. */
  poolSize: number
  /** Where results/<timestamp>.json, REPORT.md and charts/ go. */
  outDir: string
  /** Rewrite the bench section of docs/benchmarks.md (default: only when writing into bench/ itself). */
  readme: boolean
  /** Run `tsc -p tsconfig.build.json` first so dist/src/server.js is the code in src/. */
  build: boolean
  /** Admin URL of the PostgreSQL server for throwaway databases; unset: embedded PostgreSQL. */
  databaseUrl: string | undefined
  /** Progress lines (stderr by default). */
  log: (line: string) => void
}

export const usage = `Usage: npm run bench -- [flags]   (the full default run: ≈ 15 min of measurements on 2 quiet cores)
  --quick                 1 repetition, 2 s loads, burst 2000, 1000 spread users, 1 s batch ceilings
  --strategies a,b        subset of ${strategyNames.join(',')} (default: all)
  --scenarios a,b         subset of ${scenarioNames.join(',')} (default: all)
  --group-commit a,b      GROUP_COMMIT values to compare: on,off (default both; a service per strategy and value)
  --max-batch N           GROUP_COMMIT_MAX_BATCH of the services (1..${MAX_BATCH_SIZE}, default 512)
  --batch-sizes a,b       batch sizes of the batched database ceiling (default 1,20,100,512)
  --batch-duration S      seconds per batched-ceiling measurement (default 2)
  --burst N               simultaneous requests in the burst (even, default 10000)
  --repetitions N         repetitions per measurement (default 3; medians are reported)
  --duration S            seconds per hot/spread load and per-commit ceiling (default 8)
  --connections N         autocannon connections and ceiling workers (default 100)
  --users N               users of the spread scenario (default 10000)
  --pool N                DB_POOL_MAX of the service and the ceiling's pool (default 10)
  --out DIR               write results/, REPORT.md and charts/ there (default bench/)
  --no-build              skip tsc (npm run bench has just compiled)
  DATABASE_URL            admin URL for throwaway databases; unset: embedded PostgreSQL`

function positiveInt (value: string | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback
  const number = Number(value)
  if (!Number.isInteger(number) || number < 1) throw new Error(`--${name} must be a positive integer, got ${value}`)
  return number
}

function sizes (value: string | undefined, fallback: number[]): number[] {
  if (value === undefined) return fallback
  const picked = value.split(',').map((item) => item.trim()).filter(Boolean).map(Number)
  if (picked.length === 0 || picked.some((n) => !Number.isInteger(n) || n < 1 || n > MAX_BATCH_SIZE)) {
    throw new Error(`--batch-sizes must be integers 1..${MAX_BATCH_SIZE}, got ${value}`)
  }
  return [...new Set(picked)].sort((a, b) => a - b)
}

function pick<T extends string> (value: string | undefined, known: readonly T[], name: string): T[] {
  if (value === undefined) return [...known]
  const picked = value.split(',').map((item) => item.trim()).filter(Boolean)
  for (const item of picked) {
    if (!known.includes(item as T)) throw new Error(`--${name}: unknown ${item} (known: ${known.join(', ')})`)
  }
  if (picked.length === 0) throw new Error(`--${name} needs at least one of ${known.join(', ')}`)
  return known.filter((item) => picked.includes(item))
}

export function parseOptions (argv: string[], env: Record<string, string | undefined> = process.env): BenchOptions {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      quick: { type: 'boolean', default: false },
      strategies: { type: 'string' },
      scenarios: { type: 'string' },
      'group-commit': { type: 'string' },
      'max-batch': { type: 'string' },
      'batch-sizes': { type: 'string' },
      'batch-duration': { type: 'string' },
      burst: { type: 'string' },
      repetitions: { type: 'string' },
      duration: { type: 'string' },
      connections: { type: 'string' },
      users: { type: 'string' },
      pool: { type: 'string' },
      out: { type: 'string' },
      'no-build': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  })
  if (values.help === true) throw new Error(usage)
  const quick = values.quick === true
  const burst = positiveInt(values.burst, 'burst', quick ? 2000 : 10_000)
  if (burst % 2 !== 0) throw new Error(`--burst must be even (half the requests succeed), got ${burst}`)
  const poolSize = positiveInt(values.pool, 'pool', 10)
  if (poolSize < 2 || poolSize > 100) throw new Error(`--pool must be 2..100 (DB_POOL_MAX), got ${poolSize}`)
  const maxBatch = positiveInt(values['max-batch'], 'max-batch', 512)
  if (maxBatch > MAX_BATCH_SIZE) throw new Error(`--max-batch must be 1..${MAX_BATCH_SIZE} (GROUP_COMMIT_MAX_BATCH), got ${maxBatch}`)
  const benchDir = path.join(projectRoot, 'bench')
  const outDir = path.resolve(values.out ?? benchDir)
  const databaseUrl = env.DATABASE_URL === '' ? undefined : env.DATABASE_URL
  return {
    quick,
    strategies: pick(values.strategies, strategyNames, 'strategies'),
    scenarios: pick(values.scenarios, scenarioNames, 'scenarios'),
    groupCommit: pick(values['group-commit'], groupCommitModes, 'group-commit'),
    maxBatch,
    batchSizes: sizes(values['batch-sizes'], [1, 20, 100, 512]),
    batchSeconds: positiveInt(values['batch-duration'], 'batch-duration', quick ? 1 : 2),
    burst,
    repetitions: positiveInt(values.repetitions, 'repetitions', quick ? 1 : 3),
    loadSeconds: positiveInt(values.duration, 'duration', quick ? 2 : 8),
    warmupSeconds: quick ? 0.5 : 2,
    connections: positiveInt(values.connections, 'connections', 100),
    spreadUsers: positiveInt(values.users, 'users', quick ? 1000 : 10_000),
    poolSize,
    outDir,
    readme: outDir === benchDir,
    build: values['no-build'] !== true,
    databaseUrl,
    log: (line) => { process.stderr.write(line + '\n') },
  }
}
