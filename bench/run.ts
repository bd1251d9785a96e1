import { execFile } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import os from 'node:os'
import { pathToFileURL } from 'node:url'
import { promisify } from 'node:util'
import pg from 'pg'
import { createThrowawayDatabase, type ThrowawayDatabase } from '../src/tooling/throwaway-database.js'
import type { StrategyName } from '../src/config.js'
import type { BatchLock } from '../src/strategies/types.js'
import {
  BURST_USER, balanceOf, balancePerCommit, batchLoad, books, ceilingBurst, ceilingLoad, createFixtures, globalInvariants,
  journalCount, perCommitLoad, resetBalance, settledJournalCount, type DatabaseLoadOutcome, type Fixtures,
} from './database.js'
import { batchFigures, burstBooksChecks, burstChecks, burstFigures, journalledChecks, loadChecks, loadFigures } from './checks.js'
import { burst, load } from './load.js'
import { batchStats, scrapeBatchMetrics, type BatchSnapshot } from './metrics.js'
import {
  createEventsSides, createFeatureFixtures, dropEventsSides, measureFeature, startEventsServices, stopEventsServices, watchedBurst,
  type EventsSide, type FeatureFixtures,
} from './feature-scenarios.js'
import { BULK_CHANGES_PER_REQUEST, BULK_USERS, isFeatureScenario, parseOptions, usage, type BenchOptions, type GroupCommitMode, type ScenarioName } from './options.js'
import { floorScript } from './paths.js'
import { startChildServer, watchProcess, type ChildServer, type ProcessUsage } from '../src/tooling/processes.js'
import { projectRoot, serverScript } from '../src/tooling/project-root.js'
import { Progress, formatSeconds } from './progress.js'
import { writeOutputs, type WrittenFiles } from './report.js'

export { burstChecks, loadChecks } from './checks.js'
import {
  batchLockOf, computePairs, computeRatios, evaluateGoals, metricOf, spread, summarise, targetKey, variants,
  type BenchResult, type FeatureService, type RunRecord, type TargetSpec,
} from './results.js'

interface StrategyEnv {
  strategy: StrategyName
  db: ThrowawayDatabase
  /** The production build on this database, one per GROUP_COMMIT value measured (measured one at a time). */
  services: Partial<Record<GroupCommitMode, ChildServer>>
  /** A small pool for fixtures, resets and checks (never measured). */
  admin: pg.Pool
  fixtures: Fixtures
  /** On the feature service's database only: the bulk and holds scenarios' users. */
  featureFixtures?: FeatureFixtures
}

/** The database-only ceilings run on a database of their own: their journal grows by hundreds of thousands of rows. */
interface CeilingsEnv {
  db: ThrowawayDatabase
  admin: pg.Pool
  hotUser: number
}

interface Step extends TargetSpec {
  repetition: number
  scenario: ScenarioName
  estimateS: number
}

const SERVICE_LOG_LEVEL = 'warn'

async function build (): Promise<void> {
  const tsc = `${projectRoot}/node_modules/typescript/bin/tsc`
  await promisify(execFile)(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: projectRoot })
}

async function postgresVersion (pool: pg.Pool): Promise<string> {
  const { rows } = await pool.query<{ server_version: string }>('SHOW server_version')
  return rows[0]?.server_version ?? 'unknown'
}

async function postgresSettings (pool: pg.Pool): Promise<Record<string, string>> {
  const names = ['synchronous_commit', 'fsync', 'shared_buffers', 'max_connections', 'wal_level']
  const { rows } = await pool.query<{ name: string, setting: string, unit: string | null }>(
    'SELECT name, setting, unit FROM pg_settings WHERE name = ANY($1) ORDER BY name', [names])
  return Object.fromEntries(rows.map((row) => [row.name, row.unit === '8kB' ? `${Number(row.setting) * 8 / 1024}MB` : row.setting]))
}

function randomIn (from: number, to: number): () => number {
  return () => from + Math.floor(Math.random() * (to - from + 1))
}

/**
 * An idle pooled client that loses its connection (a terminated backend, a dropped database) makes pg.Pool emit
 * 'error'; with no listener that is an uncaught exception that kills the whole bench. The pool already discards
 * that client, and the next query opens a new one.
 */
function ignoreIdleErrors (pool: pg.Pool): pg.Pool {
  pool.on('error', (error) => { process.stderr.write(`bench: an idle database connection was lost (${error.message}); the pool replaces it\n`) })
  return pool
}

async function withPool<T> (url: string, max: number, work: (pool: pg.Pool) => Promise<T>): Promise<T> {
  const pool = ignoreIdleErrors(new pg.Pool({ connectionString: url, max, application_name: 'balance-bench-ceiling' }))
  try {
    // Open every connection before timing, as a warm service pool would have them.
    await Promise.all(Array.from({ length: max }, async () => await pool.query('SELECT 1')))
    return await work(pool)
  } finally {
    await pool.end()
  }
}

/** The ceilings scenario: the database alone, one commit per change or one batch per call; exact counts afterwards. */
async function measureCeiling (step: Step, options: BenchOptions, ceilings: CeilingsEnv, record: RunRecord): Promise<void> {
  const { admin, db, hotUser } = ceilings
  await admin.query('VACUUM users')
  const entriesBefore = await journalCount(admin)
  const balanceBefore = await balanceOf(admin, hotUser)
  let outcome: DatabaseLoadOutcome
  if (step.kind === 'per-commit') {
    outcome = await withPool(db.url, options.poolSize, async (pool) => await perCommitLoad(pool, hotUser, options.poolSize, options.loadSeconds))
    const drop = await balancePerCommit(admin, hotUser, balanceBefore)
    if (drop !== outcome.applied) record.failures.push(`balance fell by ${drop} for ${outcome.applied} applied updates`)
  } else {
    const size = step.batchSize!
    outcome = await withPool(db.url, 1, async (pool) => await batchLoad(pool, step.lock!, hotUser, size, options.batchSeconds))
    const written = await journalCount(admin) - entriesBefore
    if (written !== outcome.applied) record.failures.push(`${written} journal entries for ${outcome.applied} applied changes`)
    const drop = balanceBefore - await balanceOf(admin, hotUser)
    if (drop !== outcome.applied) record.failures.push(`balance fell by ${drop} for ${outcome.applied} applied changes`)
  }
  record.figures = { changesPerSec: outcome.changesPerSec, callsPerSec: outcome.callsPerSec, p50Ms: outcome.p50Ms, p99Ms: outcome.p99Ms }
  record.detail = { ...outcome }
  if (outcome.errors > 0 || outcome.other > 0) record.failures.push(`${outcome.errors} errors, ${outcome.other} not applied`)
  if (outcome.applied === 0) record.failures.push('nothing applied')
  record.failures.push(...await globalInvariants(admin))
}

/** One measurement of one target; returns its record with every invariant check it ran. */
async function measure (step: Step, options: BenchOptions, floor: ChildServer | undefined, env: StrategyEnv | undefined, ceilings: CeilingsEnv | undefined, features: { events: EventsSide[], service: FeatureService, env: StrategyEnv | undefined }): Promise<RunRecord> {
  const record: RunRecord = { repetition: step.repetition, ok: false, failures: [], figures: {}, detail: {} }
  const count = options.burst
  const half = count / 2
  const isBurst = step.scenario === 'burst' || step.scenario === 'keyed-burst'
  // The keyed burst: request i carries `<prefix>-<i>`, a prefix new to this measurement, so every key is a first use.
  const keyPrefix = (): string | undefined => step.scenario === 'keyed-burst' ? `bench-${randomUUID()}` : undefined

  if (step.scenario === 'ceilings') {
    await measureCeiling(step, options, ceilings!, record)
    record.ok = record.failures.length === 0
    return record
  }
  if (isFeatureScenario(step.scenario)) {
    const { service, events } = features
    const featureEnv = features.env!
    const written = await measureFeature({ ...step, scenario: step.scenario }, {
      options, floor: floor!, service: featureEnv.services[service.groupCommit]!, admin: featureEnv.admin, fixtures: featureEnv.featureFixtures!, events,
    }, record)
    if (written !== undefined) record.failures.push(...await globalInvariants(written))
    record.ok = record.failures.length === 0
    return record
  }

  if (step.kind === 'floor') {
    const server = floor!
    if (isBurst) {
      await fetch(`${server.url}/bench/reset`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ userId: BURST_USER, balance: count }) })
      Object.assign(record, await watchedBurst(server, count, 200, async () => await burst(`${server.url}/api/balance`, count, { userId: BURST_USER, amount: -2 }, keyPrefix())))
    } else {
      const pick = step.scenario === 'hot' ? () => 2 : randomIn(2, options.spreadUsers + 1)
      const watch = await watchProcess(server.pid)
      const outcome = await load({ url: server.url, connections: options.connections, seconds: options.loadSeconds, body: () => ({ userId: pick(), amount: -1 }) })
      record.figures = loadFigures(outcome, outcome.responses, await watch.stop())
      record.detail = { ...outcome }
      record.failures = loadChecks(outcome)
    }
    record.ok = record.failures.length === 0
    return record
  }

  const { admin, fixtures, strategy, db } = env!
  const service = step.kind === 'service' ? env!.services[step.groupCommit!]! : undefined
  const scrape = async (): Promise<BatchSnapshot> => service === undefined ? {} : await scrapeBatchMetrics(service.url, strategy)
  await admin.query('VACUUM users')
  if (isBurst) {
    await resetBalance(admin, BURST_USER, count)
    const before = await books(admin, BURST_USER)
    if (service !== undefined) {
      const metricsBefore = await scrape()
      const watch = await watchProcess(service.pid)
      const outcome = await burst(`${service.url}/api/balance`, count, { userId: BURST_USER, amount: -2 }, keyPrefix())
      const usage = await watch.stop()
      const batches = batchStats(metricsBefore, await scrape(), options.maxBatch)
      record.figures = { ...burstFigures(outcome, usage), ...batchFigures(batches) }
      record.detail = { statuses: outcome.statuses, codes: outcome.codes, errors: outcome.errors, ...(batches === undefined ? {} : { batches }) }
      record.failures = burstChecks(outcome, count)
    } else {
      const outcome = await withPool(db.url, options.poolSize, async (pool) => await ceilingBurst(pool, strategy, BURST_USER, count))
      record.figures = burstFigures({ wallMs: outcome.wallMs, latencyMs: outcome.latencyMs, statuses: {}, codes: {}, errors: {} })
      record.detail = { ...outcome }
      if (outcome.applied !== half || outcome.insufficient !== half) record.failures.push(`${outcome.applied} applied and ${outcome.insufficient} refused, expected ${half} and ${half}`)
      if (outcome.other + outcome.errors > 0) record.failures.push(`${outcome.other} unexpected outcomes, ${outcome.errors} errors`)
    }
    const after = await books(admin, BURST_USER)
    record.detail.books = { before, after }
    record.failures.push(...burstBooksChecks(before, after, half))
  } else {
    const pick = step.scenario === 'hot' ? () => fixtures.hotUser : randomIn(fixtures.spreadFrom, fixtures.spreadTo)
    const before = await journalCount(admin)
    if (service !== undefined) {
      const metricsBefore = await scrape()
      const watch = await watchProcess(service.pid)
      const outcome = await load({ url: service.url, connections: options.connections, seconds: options.loadSeconds, body: () => ({ userId: pick(), amount: -1 }) })
      const usage = await watch.stop()
      const written = await settledJournalCount(admin) - before
      const batches = batchStats(metricsBefore, await scrape(), options.maxBatch)
      record.figures = { ...loadFigures(outcome, outcome.responses, usage), ...batchFigures(batches) }
      record.detail = { ...outcome, journalled: written, ...(batches === undefined ? {} : { batches }) }
      record.failures = [...loadChecks(outcome), ...journalledChecks(written, outcome.ok2xx, options.connections)]
    } else {
      const outcome = await withPool(db.url, options.poolSize, async (pool) => await ceilingLoad(pool, strategy, options.connections, options.loadSeconds, pick))
      const written = await journalCount(admin) - before
      record.figures = loadFigures(outcome, outcome.applied)
      record.detail = { ...outcome, journalled: written }
      if (outcome.errors > 0 || outcome.other > 0) record.failures.push(`${outcome.errors} errors, ${outcome.other} refusals`)
      if (written !== outcome.applied) record.failures.push(`${written} journal entries for ${outcome.applied} applied changes`)
    }
  }
  record.failures.push(...await globalInvariants(admin))
  record.ok = record.failures.length === 0
  return record
}

/** The batch locks the selected strategies take (the batched ceiling measures each). */
function locksOf (options: BenchOptions): BatchLock[] {
  return [...new Set(options.strategies.map(batchLockOf))]
}

/** The feature scenarios' one service: advisory (the default strategy) with group commit on, when the run has them. */
export function featureServiceOf (options: BenchOptions): FeatureService {
  return {
    strategy: options.strategies.includes('advisory') ? 'advisory' : options.strategies[0]!,
    groupCommit: options.groupCommit.includes('on') ? 'on' : options.groupCommit[0]!,
  }
}

/**
 * Seconds a step takes on 2 quiet cores, from full runs: bursts at these requests per second (the floor ~2,000/s,
 * group commit on ~1,600/s and off ~1,000/s, keyed about 1.5× and 2× slower), loads their duration, plus the
 * checks after each (VACUUM, Σ journal = balance over the whole journal).
 */
const CHECKS_S = 1
const BURST_PER_S = { floor: 2000, on: 1600, off: 1000, keyedOn: 1100, keyedOff: 500, ceiling: 2200, client: 1000, hold: 1200 }
/** Booting one service on a migrated database and warming it. */
const SERVICE_START_S = 3

function plan (options: BenchOptions): Step[] {
  const steps: Step[] = []
  const burstS = (perSecond: number, count = options.burst): number => CHECKS_S + count / perSecond
  const loadS = options.loadSeconds + CHECKS_S
  const featureLoadS = options.featureSeconds + CHECKS_S
  const feature = featureServiceOf(options)
  const service = { kind: 'service' as const, strategy: feature.strategy, groupCommit: feature.groupCommit }
  for (let repetition = 1; repetition <= options.repetitions; repetition += 1) {
    // Rotate the strategies between repetitions so slow drift in machine load does not always hit the same one;
    // alternate which GROUP_COMMIT value goes first for the same reason.
    const shift = (repetition - 1) % options.strategies.length
    const order = [...options.strategies.slice(shift), ...options.strategies.slice(0, shift)]
    const modes = repetition % 2 === 1 ? options.groupCommit : [...options.groupCommit].reverse()
    // The feature scenarios alternate which of their two things goes first, for the same reason.
    const alternate = <T>(pair: readonly T[]): T[] => repetition % 2 === 1 ? [...pair] : [...pair].reverse()
    for (const scenario of options.scenarios) {
      if (scenario === 'ceilings') {
        steps.push({ repetition, scenario, kind: 'per-commit', estimateS: loadS })
        for (const lock of locksOf(options)) {
          for (const batchSize of options.batchSizes) steps.push({ repetition, scenario, kind: 'batch', lock, batchSize, estimateS: options.batchSeconds + CHECKS_S })
        }
        continue
      }
      if (scenario === 'client-burst') {
        steps.push({ repetition, scenario, kind: 'floor', estimateS: burstS(BURST_PER_S.client * 1.5) })
        steps.push({ repetition, scenario, ...service, estimateS: burstS(BURST_PER_S.client) })
        continue
      }
      if (scenario === 'bulk') {
        const changes = options.bulkRequests * BULK_CHANGES_PER_REQUEST
        for (const variant of alternate(variants.bulk)) steps.push({ repetition, scenario, ...service, variant, estimateS: CHECKS_S + changes / (variant === 'bulk' ? 30_000 : 2500) })
        continue
      }
      if (scenario === 'holds') {
        for (const variant of alternate(['change-burst', 'hold-burst'] as const)) {
          steps.push({ repetition, scenario, kind: 'floor', variant, estimateS: burstS(BURST_PER_S.floor, options.featureBurst) })
          steps.push({ repetition, scenario, ...service, variant, estimateS: burstS(variant === 'hold-burst' ? BURST_PER_S.hold : BURST_PER_S.on, options.featureBurst) })
        }
        for (const variant of alternate(['hot-change', 'hot-hold-capture'] as const)) steps.push({ repetition, scenario, ...service, variant, estimateS: featureLoadS })
        continue
      }
      if (scenario === 'events') {
        // Both services boot (and warm) before the first events step of each repetition and stop after the last.
        const start = 2 * (SERVICE_START_S + options.warmupSeconds)
        const sides = alternate(['on', 'off'] as const)
        sides.forEach((mode, i) => { steps.push({ repetition, scenario, ...service, variant: `burst-events-${mode}`, estimateS: burstS(BURST_PER_S.on, options.featureBurst) + (i === 0 ? start : 0) }) })
        for (const mode of sides) steps.push({ repetition, scenario, ...service, variant: `hot-events-${mode}`, estimateS: featureLoadS })
        continue
      }
      const isBurst = scenario === 'burst' || scenario === 'keyed-burst'
      steps.push({ repetition, scenario, kind: 'floor', estimateS: isBurst ? burstS(BURST_PER_S.floor) : loadS })
      for (const strategy of order) {
        for (const groupCommit of modes) {
          const perSecond = scenario === 'keyed-burst'
            ? (groupCommit === 'on' ? BURST_PER_S.keyedOn : BURST_PER_S.keyedOff)
            : (groupCommit === 'on' ? BURST_PER_S.on : BURST_PER_S.off)
          steps.push({ repetition, scenario, kind: 'service', strategy, groupCommit, estimateS: isBurst ? burstS(perSecond) : loadS })
        }
        // The strategy's one-change SQL through pg.Pool, where the database can bound the service: the burst and the hot
        // row. The keyed burst has none (the keyed SQL is a different call); spread compares group commit on with off.
        if (scenario === 'burst' || scenario === 'hot') steps.push({ repetition, scenario, kind: 'ceiling', strategy, estimateS: isBurst ? burstS(BURST_PER_S.ceiling) : loadS })
      }
    }
  }
  return steps
}

function describe (step: Step, options: BenchOptions): string {
  const what = step.kind === 'floor'
    ? 'HTTP floor'
    : step.kind === 'service'
      ? `service ${step.strategy!}, group commit ${step.groupCommit!}`
      : step.kind === 'ceiling'
        ? `ceiling ${step.strategy!}`
        : step.kind === 'per-commit'
          ? `per-commit ceiling, ${options.poolSize} connections`
          : `batch SQL, ${step.lock!} lock, batch of ${step.batchSize!}`
  const v = step.variant
  const size = step.scenario === 'ceilings'
    ? `${step.kind === 'batch' ? options.batchSeconds : options.loadSeconds} s`
    : step.scenario === 'bulk'
      ? (v === 'bulk' ? `${options.bulkRequests} requests × ${BULK_CHANGES_PER_REQUEST} changes` : `${options.bulkRequests * BULK_CHANGES_PER_REQUEST} single PATCHes`)
      : v?.startsWith('hot-') === true
        ? `${options.featureSeconds} s`
        : step.scenario === 'hot' || step.scenario === 'spread'
          ? `${options.loadSeconds} s`
          : `${step.scenario === 'holds' || step.scenario === 'events' ? options.featureBurst : options.burst} requests`
  return `rep ${step.repetition}/${options.repetitions} · ${step.scenario}${v === undefined ? '' : ` ${v}`} (${size}) · ${what}`
}

/** Seconds before the first measurement: every service booted (the first on a database migrates it), fixtures, warm-up. */
function setupSeconds (options: BenchOptions): number {
  const http = options.scenarios.some((scenario) => scenario !== 'ceilings')
  const services = http ? options.strategies.length * options.groupCommit.length + 1 : 0
  const events = options.scenarios.includes('events') ? 2 * SERVICE_START_S : 0
  return (options.scenarios.includes('ceilings') ? SERVICE_START_S : 0) + services * (SERVICE_START_S + options.warmupSeconds) + events
}

/** Seconds the whole run should take on 2 quiet cores (set-up and every planned step): printed before it starts. */
export function estimateSeconds (options: BenchOptions): number {
  return setupSeconds(options) + plan(options).reduce((sum, step) => sum + step.estimateS, 0)
}

export interface BenchRun {
  result: BenchResult
  files: WrittenFiles
}

/** The service (production build) on `db` with one GROUP_COMMIT value. */
async function startService (strategy: StrategyName, groupCommit: GroupCommitMode, db: ThrowawayDatabase, options: BenchOptions, poolSize = options.poolSize, extra: Record<string, string> = {}): Promise<ChildServer> {
  const named = Object.entries(extra).map(([name, value]) => `, ${name}=${value}`).join('')
  return await startChildServer(`service (${strategy}, group commit ${groupCommit}${named})`, serverScript, {
    ...extra,
    DATABASE_URL: db.url,
    BALANCE_STRATEGY: strategy,
    GROUP_COMMIT: groupCommit,
    GROUP_COMMIT_MAX_BATCH: String(options.maxBatch),
    DB_POOL_MAX: String(poolSize),
    LOG_LEVEL: SERVICE_LOG_LEVEL,
  })
}

/** A throwaway database migrated the production way (a service boots on it once) with one hot-row user. */
async function createCeilingsEnv (options: BenchOptions): Promise<CeilingsEnv> {
  const db = await createThrowawayDatabase('bench_ceilings', options.databaseUrl)
  const admin = ignoreIdleErrors(new pg.Pool({ connectionString: db.url, max: 2, application_name: 'balance-bench-admin' }))
  try {
    const migrator = await startService(options.strategies[0]!, 'off', db, options, 2)
    await migrator.stop()
    const fixtures = await createFixtures(admin, 0)
    return { db, admin, hotUser: fixtures.hotUser }
  } catch (error) {
    await admin.end()
    await db.drop()
    throw error
  }
}

export async function runBench (options: BenchOptions): Promise<BenchRun> {
  const log = options.log
  const startedAt = new Date()
  if (options.build) {
    log('bench: building (tsc -p tsconfig.build.json)')
    await build()
  }
  const environments: StrategyEnv[] = []
  let ceilings: CeilingsEnv | undefined
  let floor: ChildServer | undefined
  const events: EventsSide[] = []
  const httpScenarios = options.scenarios.filter((scenario) => scenario !== 'ceilings')
  const feature = featureServiceOf(options)
  const features = options.scenarios.filter(isFeatureScenario)
  // Feature scenarios alone need only the feature service; the strategy scenarios need every strategy × GROUP_COMMIT.
  const strategyRun = httpScenarios.some((scenario) => !isFeatureScenario(scenario))
  const strategies = strategyRun ? options.strategies : [feature.strategy]
  const modes = strategyRun ? options.groupCommit : [feature.groupCommit]
  const startEventsService = async (db: ThrowawayDatabase, mode: 'on' | 'off'): Promise<ChildServer> =>
    await startService(feature.strategy, feature.groupCommit, db, options, options.poolSize, { EVENTS: mode })
  try {
    log(`bench: PostgreSQL ${options.databaseUrl === undefined ? 'embedded (DATABASE_URL unset)' : 'from DATABASE_URL'}; pool ${options.poolSize}; ` +
      `strategies ${options.strategies.join(', ')}; group commit ${options.groupCommit.join(', ')} (max batch ${options.maxBatch}); scenarios ${options.scenarios.join(', ')}` +
      `${features.length > 0 ? ` (${features.join(', ')} on ${feature.strategy}, group commit ${feature.groupCommit} only)` : ''}; ` +
      `estimated ${formatSeconds(estimateSeconds(options))} on 2 quiet cores`)
    if (options.scenarios.includes('ceilings')) ceilings = await createCeilingsEnv(options)
    if (httpScenarios.length > 0) {
      floor = await startChildServer('HTTP floor', floorScript, { LOG_LEVEL: SERVICE_LOG_LEVEL })
      for (const strategy of strategies) {
        const db = await createThrowawayDatabase(`bench_${strategy}`, options.databaseUrl)
        const admin = ignoreIdleErrors(new pg.Pool({ connectionString: db.url, max: 2, application_name: 'balance-bench-admin' }))
        const env: StrategyEnv = { strategy, db, services: {}, admin, fixtures: { hotUser: 0, spreadFrom: 0, spreadTo: 0 } }
        environments.push(env)
        // One at a time: the first boot migrates and seeds; the others find nothing pending.
        for (const groupCommit of modes) env.services[groupCommit] = await startService(strategy, groupCommit, db, options)
        env.fixtures = await createFixtures(admin, options.spreadUsers)
        if (features.length > 0 && strategy === feature.strategy) env.featureFixtures = await createFeatureFixtures(admin)
        const pids = modes.map((mode) => `${mode}: pid ${env.services[mode]!.pid}`).join(', ')
        log(`bench: ${strategy}: services (group commit ${pids}) on ${db.name}, ${options.spreadUsers} spread users + hot user ${env.fixtures.hotUser}`)
      }
      if (options.scenarios.includes('events')) {
        events.push(...await createEventsSides(options, startEventsService))
        log(`bench: events: ${events.map((side) => `EVENTS=${side.mode} on ${side.db.name}`).join(', ')} (their services run while the scenario is measured)`)
      }
    }

    // Warm every server's JIT and connections with unmeasured load; the journal checks still apply afterwards.
    const services = environments.flatMap((env) => Object.values(env.services).map((server) => ({ server, hot: env.fixtures.hotUser })))
    for (const { server, hot } of [...(floor === undefined ? [] : [{ server: floor, hot: 2 }]), ...services]) {
      await load({ url: server.url, connections: options.connections, seconds: options.warmupSeconds, body: () => ({ userId: hot, amount: -1 }) })
    }
    await Promise.all(environments.map(async (env) => await settledJournalCount(env.admin)))

    const anyAdmin = environments[0]?.admin ?? ceilings!.admin
    const result: BenchResult = {
      schema: 'balance-api-bench/2',
      startedAt: startedAt.toISOString(),
      finishedAt: '',
      command: ['npm run bench --', ...process.argv.slice(2).filter((arg) => arg !== '--no-build')].join(' ').replace(/ --$/, ''),
      ok: false,
      failures: [],
      machine: {
        cpuModel: os.cpus()[0]?.model ?? 'unknown',
        cores: os.cpus().length,
        memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
        os: `${os.type()} ${os.release()} ${os.arch()}`,
        node: process.version,
        postgres: await postgresVersion(anyAdmin),
        postgresSettings: await postgresSettings(anyAdmin),
        database: options.databaseUrl === undefined ? 'embedded' : 'external',
        loadAverageAtStart: os.loadavg().map((value) => Math.round(value * 100) / 100),
        loadAverageAtEnd: [],
      },
      settings: {
        quick: options.quick,
        strategies: options.strategies,
        scenarios: options.scenarios,
        groupCommit: options.groupCommit,
        maxBatch: options.maxBatch,
        batchSizes: options.batchSizes,
        batchSeconds: options.batchSeconds,
        repetitions: options.repetitions,
        burstRequests: options.burst,
        loadSeconds: options.loadSeconds,
        warmupSeconds: options.warmupSeconds,
        connections: options.connections,
        ceilingWorkers: options.connections,
        spreadUsers: options.spreadUsers,
        poolSize: options.poolSize,
        full: options.full,
        ...(features.length === 0
          ? {}
          : { featureService: feature, bulkRequests: options.bulkRequests, bulkChangesPerRequest: BULK_CHANGES_PER_REQUEST, bulkUsers: BULK_USERS, featureSeconds: options.featureSeconds, featureBurst: options.featureBurst }),
      },
      scenarios: {},
      goals: [],
    }
    for (const scenario of options.scenarios) {
      result.scenarios[scenario] = { name: scenario, metric: metricOf(scenario), targets: {}, ratios: {} }
    }

    const steps = plan(options)
    const progress = new Progress(steps.map((step) => step.estimateS), log)
    const loadSamples: number[] = []
    for (const [index, step] of steps.entries()) {
      progress.step(describe(step, options))
      const env = environments.find((e) => e.strategy === step.strategy)
      if (step.scenario === 'events') await startEventsServices(events, options, startEventsService)
      const record = await measure(step, options, floor, env, ceilings, { events, service: feature, env: environments.find((e) => e.strategy === feature.strategy) })
      if (step.scenario === 'events' && steps[index + 1]?.scenario !== 'events') await stopEventsServices(events)
      loadSamples.push(os.loadavg()[0]!)
      const scenario = result.scenarios[step.scenario]!
      const { repetition: _repetition, scenario: _scenario, estimateS: _estimate, ...spec } = step
      const key = targetKey(spec)
      const target = scenario.targets[key] ?? { ...spec, runs: [], status: 'ok', summary: {} }
      scenario.targets[key] = target
      target.runs.push(record)
      const f = record.figures
      const headline = [
        f.changesPerSec === undefined ? undefined : `${Math.round(f.changesPerSec)} changes/s`,
        f.wallMs === undefined ? undefined : `${Math.round(f.wallMs)} ms`,
        f.pairsPerSec === undefined ? undefined : `${Math.round(f.pairsPerSec)} pairs/s`,
        f.reqPerSec === undefined || f.changesPerSec !== undefined ? undefined : `${Math.round(f.reqPerSec)} req/s`,
        f.retriedCalls === undefined ? undefined : `${f.retriedCalls} calls retried`,
      ].filter((part) => part !== undefined).join(', ')
      const batches = f.batches === undefined ? '' : `; ${f.batches} batches, mean ${(f.batchMean ?? NaN).toFixed(1)}, max ≤ ${f.batchMax}`
      const rss = f.peakRssMb === undefined ? '' : `; peak RSS ${Math.round(f.peakRssMb)} MB`
      log(record.ok ? `        ${headline}${rss}${batches}` : `        FAILED: ${record.failures.join('; ')}`)
      if (!record.ok) result.failures.push(`${step.scenario} ${key} rep ${step.repetition}: ${record.failures.join('; ')}`)
    }

    for (const scenario of Object.values(result.scenarios)) {
      for (const target of Object.values(scenario.targets)) if (target !== undefined) summarise(target)
    }
    const perCommit = result.scenarios.ceilings?.targets['per-commit']
    for (const scenario of Object.values(result.scenarios)) {
      computeRatios(scenario, options.strategies, perCommit)
      if (isFeatureScenario(scenario.name)) computePairs(scenario, feature)
    }
    result.goals = evaluateGoals(result)
    result.ok = result.failures.length === 0
    result.machine.loadAverageAtEnd = os.loadavg().map((value) => Math.round(value * 100) / 100)
    result.machine.loadAverageDuring = spread(loadSamples)
    result.finishedAt = new Date().toISOString()
    const files = await writeOutputs(result, options.outDir, options.readme)
    log(`bench: ${result.ok ? 'all checks passed' : `${result.failures.length} FAILED measurement(s)`} in ${formatSeconds((Date.now() - startedAt.getTime()) / 1000)}; ${files.report}`)
    return { result, files }
  } finally {
    await dropEventsSides(events)
    await floor?.stop()
    for (const env of environments) {
      for (const service of Object.values(env.services)) await service.stop()
      await env.admin.end()
      await env.db.drop()
    }
    if (ceilings !== undefined) {
      await ceilings.admin.end()
      await ceilings.db.drop()
    }
  }
}

async function main (): Promise<void> {
  let options: BenchOptions
  try {
    options = parseOptions(process.argv.slice(2))
  } catch (error) {
    console.error(error instanceof Error ? error.message : error)
    if (!(error instanceof Error && error.message === usage)) console.error(usage)
    process.exit(2)
  }
  const { result } = await runBench(options)
  process.exit(result.ok ? 0 : 1)
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error: unknown) => {
    console.error(error)
    process.exit(1)
  })
}
