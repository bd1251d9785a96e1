import { parseArgs } from 'node:util'
import os from 'node:os'
import path from 'node:path'
import type { StrategyName } from '../src/config.js'
import { strategyNames } from '../src/strategies/index.js'
import { projectRoot } from '../src/tooling/project-root.js'

/**
 * ceilings: the database alone (one commit per change, and the batch SQL at several batch sizes), no HTTP;
 * keyed-burst: the burst with a unique Idempotency-Key on every request. These five measure every strategy with group
 * commit on and off. The feature scenarios measure one service (advisory, group commit on; see featureService):
 * client-burst: the seed burst sent through balance-api/client (its default keys and retries), service and floor;
 * bulk: 100-change POST /api/balance/batch requests against single PATCHes on the same users;
 * holds: the hold burst against the change burst, and hold → capture pairs against changes on one hot row;
 * events: the burst and the hot row with EVENTS=on against EVENTS=off (a service and a database for each).
 */
export const strategyScenarioNames = ['ceilings', 'burst', 'keyed-burst', 'hot', 'spread'] as const
export const featureScenarioNames = ['client-burst', 'bulk', 'holds', 'events'] as const
export const scenarioNames = [...strategyScenarioNames, ...featureScenarioNames] as const
export type ScenarioName = typeof scenarioNames[number]
export type FeatureScenarioName = typeof featureScenarioNames[number]

export function isFeatureScenario (name: ScenarioName): name is FeatureScenarioName {
  return (featureScenarioNames as readonly string[]).includes(name)
}

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
  /** Bulk requests of the bulk scenario (each BULK_CHANGES_PER_REQUEST changes over BULK_USERS users); as many × that single PATCHes. */
  bulkRequests: number
  /** Seconds of the feature scenarios' loads (holds' hot row, events' hot row): shorter than --duration, to fit the full run. */
  featureSeconds: number
  /** Requests of the holds and events bursts (each compares two bursts of this size): at most --burst, 5000 by default. */
  featureBurst: number
  /** DB_POOL_MAX of the service and max of the ceiling's pg.Pool. */
  poolSize: number
  /** Where results/<timestamp>.json, REPORT.md and charts/ go. */
  outDir: string
  /** Every strategy, scenario and GROUP_COMMIT value, not --quick: the only run that may write into bench/. */
  full: boolean
  /** Rewrite the bench section of docs/benchmarks.md (only a full run writing into bench/ itself). */
  readme: boolean
  /** Run `tsc -p tsconfig.build.json` first so dist/src/server.js is the code in src/. */
  build: boolean
  /** Admin URL of the PostgreSQL server for throwaway databases; unset: embedded PostgreSQL. */
  databaseUrl: string | undefined
  /** Progress lines (stderr by default). */
  log: (line: string) => void
}

/** The bulk scenario's shape: each request carries this many changes, spread over this many users. */
export const BULK_CHANGES_PER_REQUEST = 100
export const BULK_USERS = 1000

export const usage = `Usage: npm run bench -- [flags]   (the full default run: ≈ 23 min on 2 quiet cores; the estimate is printed first)
  --quick                 1 repetition, 2 s loads, burst 2000, 1000 spread users, 1 s batch ceilings, 20 bulk requests
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
  --bulk-requests N       bulk requests of ${BULK_CHANGES_PER_REQUEST} changes over ${BULK_USERS} users, against N × ${BULK_CHANGES_PER_REQUEST} single PATCHes (default 100)
  --feature-duration S    seconds per hot-row load of the holds and events scenarios (default 4)
  --feature-burst N       requests of the holds and events bursts (even, default the smaller of --burst and 5000)
  --pool N                DB_POOL_MAX of the service and the ceiling's pool (default 10)
  --out DIR               write results/, REPORT.md and charts/ there (default: bench/ for the full run, else
                          <os tmpdir>/balance-bench: bench/REPORT.md and docs/benchmarks.md come from full runs only)
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
      'bulk-requests': { type: 'string' },
      'feature-duration': { type: 'string' },
      'feature-burst': { type: 'string' },
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
  const strategies = pick(values.strategies, strategyNames, 'strategies')
  const scenarios = pick(values.scenarios, scenarioNames, 'scenarios')
  const groupCommit = pick(values['group-commit'], groupCommitModes, 'group-commit')
  const full = !quick && strategies.length === strategyNames.length && scenarios.length === scenarioNames.length && groupCommit.length === groupCommitModes.length
  const benchDir = path.join(projectRoot, 'bench')
  const outDir = path.resolve(values.out ?? (full ? benchDir : path.join(os.tmpdir(), 'balance-bench')))
  const databaseUrl = env.DATABASE_URL === '' ? undefined : env.DATABASE_URL
  const bulkRequests = positiveInt(values['bulk-requests'], 'bulk-requests', quick ? 20 : 100)
  if (bulkRequests > 1000) throw new Error(`--bulk-requests must be 1..1000, got ${bulkRequests}`)
  const featureBurst = positiveInt(values['feature-burst'], 'feature-burst', Math.min(burst, 5000))
  if (featureBurst % 2 !== 0 || featureBurst > 50_000) throw new Error(`--feature-burst must be even, 2..50000, got ${featureBurst}`)
  return {
    quick,
    strategies,
    scenarios,
    groupCommit,
    maxBatch,
    batchSizes: sizes(values['batch-sizes'], [1, 20, 100, 512]),
    batchSeconds: positiveInt(values['batch-duration'], 'batch-duration', quick ? 1 : 2),
    burst,
    repetitions: positiveInt(values.repetitions, 'repetitions', quick ? 1 : 3),
    loadSeconds: positiveInt(values.duration, 'duration', quick ? 2 : 8),
    warmupSeconds: quick ? 0.5 : 2,
    connections: positiveInt(values.connections, 'connections', 100),
    spreadUsers: positiveInt(values.users, 'users', quick ? 1000 : 10_000),
    bulkRequests,
    featureSeconds: positiveInt(values['feature-duration'], 'feature-duration', quick ? 2 : 4),
    featureBurst,
    poolSize,
    outDir,
    full,
    readme: full && outDir === benchDir,
    build: values['no-build'] !== true,
    databaseUrl,
    log: (line) => { process.stderr.write(line + '\n') },
  }
}
