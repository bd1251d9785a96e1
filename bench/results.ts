import type { StrategyName } from '../src/config.js'
import type { BatchLock } from '../src/strategies/types.js'
import type { FeatureScenarioName, GroupCommitMode, ScenarioName } from './options.js'

/**
 * What one measured thing is: the HTTP floor, a strategy's service (with group commit on or off), a strategy's
 * one-change SQL straight through pg.Pool (its ceiling), the per-commit ceiling (one conditional UPDATE per commit on
 * one hot row) or the batch SQL at one batch size (the batched ceiling).
 */
export type TargetKind = 'floor' | 'service' | 'ceiling' | 'per-commit' | 'batch'
type BaseKey = 'floor' | `service:${StrategyName}:${GroupCommitMode}` | `ceiling:${StrategyName}` | 'per-commit' | `batch:${BatchLock}:${number}`

/**
 * What a feature scenario measures on its target, when it measures more than one thing there: bulk's single PATCHes
 * and bulk requests; holds' change and hold bursts and its hot-row loads; events' burst and hot row per EVENTS value.
 */
export const variants = {
  bulk: ['single', 'bulk'],
  holds: ['change-burst', 'hold-burst', 'hot-change', 'hot-hold-capture'],
  events: ['burst-events-on', 'burst-events-off', 'hot-events-on', 'hot-events-off'],
} as const
export type Variant = typeof variants[keyof typeof variants][number]
export type TargetKey = BaseKey | `${BaseKey}/${Variant}`

export interface TargetSpec {
  kind: TargetKind
  strategy?: StrategyName
  groupCommit?: GroupCommitMode
  lock?: BatchLock
  batchSize?: number
  variant?: Variant
}

function baseKey (spec: TargetSpec): BaseKey {
  switch (spec.kind) {
    case 'floor': return 'floor'
    case 'per-commit': return 'per-commit'
    case 'service': return `service:${spec.strategy!}:${spec.groupCommit!}`
    case 'ceiling': return `ceiling:${spec.strategy!}`
    case 'batch': return `batch:${spec.lock!}:${spec.batchSize!}`
  }
}

export function targetKey (spec: TargetSpec): TargetKey {
  const base = baseKey(spec)
  return spec.variant === undefined ? base : `${base}/${spec.variant}`
}

export function serviceKey (strategy: StrategyName, groupCommit: GroupCommitMode): `service:${StrategyName}:${GroupCommitMode}` {
  return `service:${strategy}:${groupCommit}`
}

/** The lock the batch SQL takes for a strategy: advisory its advisory lock, row-lock and atomic the row lock. */
export function batchLockOf (strategy: StrategyName): BatchLock {
  return strategy === 'advisory' ? 'advisory' : 'row'
}

/** One repetition of one target in one scenario. A run whose checks fail keeps its figures, but is never summarised. */
export interface RunRecord {
  repetition: number
  ok: boolean
  failures: string[]
  /** Numeric figures (wallMs, reqPerSec, changesPerSec, p50Ms, p99Ms, maxMs, peakRssMb, cpuMs, batches, batchMean, …). */
  figures: Record<string, number>
  /** The raw outcome (status counts, codes, errors, batch-size distribution) for the record. */
  detail: Record<string, unknown>
}

export interface Spread { median: number, min: number, max: number }

export interface TargetResult extends TargetSpec {
  runs: RunRecord[]
  /** 'FAILED' when any repetition broke an invariant: then there are no figures to report. */
  status: 'ok' | 'FAILED'
  summary: Record<string, Spread>
}

/** A service's figure ÷ a reference's, per repetition (same repetition, so the same machine noise), then summarised. */
export interface Ratios {
  /** ÷ the strategy's own one-change SQL through pg.Pool. */
  toCeiling?: Spread
  /** ÷ the HTTP floor. */
  toFloor?: Spread
  /** ÷ the per-commit ceiling (req/s scenarios only). */
  toPerCommit?: Spread
  /** Group commit on against off for the same strategy, as a speed-up: ≥ 1 means on is faster (wall time: off ÷ on). */
  speedupVsOff?: Spread
  /** The server's peak RSS ÷ the HTTP floor's through the same measurement (wall-time scenarios). */
  rssToFloor?: Spread
}

/** The feature scenarios' comparisons, by name: what ÷ what, of which figures. */
export interface PairSpec {
  name: string
  target: TargetKey
  reference: TargetKey
  metric: string
  referenceMetric?: string
  /** What the figures are (for the report): e.g. 'wall time' or 'changes/s'. */
  note: string
}

export type RatioKey = `${StrategyName}:${GroupCommitMode}`

export interface ScenarioResult {
  name: ScenarioName
  /** The figure the ratios compare: reqPerSec or changesPerSec (higher is better) or wallMs (lower is better). */
  metric: 'reqPerSec' | 'wallMs' | 'changesPerSec'
  targets: Partial<Record<TargetKey, TargetResult>>
  ratios: Partial<Record<RatioKey, Ratios>>
  /** Feature scenarios: their named comparisons (PairSpec.name), paired per repetition. */
  pairs?: Record<string, Spread>
}

/** The headline figure of a scenario; holds and events mix bursts (wall time) with hot-row loads (their own figures). */
export function metricOf (scenario: ScenarioName): ScenarioResult['metric'] {
  switch (scenario) {
    case 'ceilings': case 'bulk': return 'changesPerSec'
    case 'hot': case 'spread': return 'reqPerSec'
    default: return 'wallMs'
  }
}

/** The one service the feature scenarios measure: advisory (the default strategy) with group commit on, when selected. */
export interface FeatureService { strategy: StrategyName, groupCommit: GroupCommitMode }

/** The comparisons of each feature scenario, on its service `s` (the events services are keyed by it too). */
export function featurePairs (scenario: FeatureScenarioName, s: FeatureService): PairSpec[] {
  const service = serviceKey(s.strategy, s.groupCommit)
  const on = (variant: Variant): TargetKey => `${service}/${variant}`
  switch (scenario) {
    case 'client-burst':
      return []
    case 'bulk':
      return [{ name: 'bulk ÷ single PATCHes, changes/s', target: on('bulk'), reference: on('single'), metric: 'changesPerSec', note: 'changes/s' }]
    case 'holds':
      return [
        { name: 'hold burst ÷ HTTP floor hold burst', target: on('hold-burst'), reference: 'floor/hold-burst', metric: 'wallMs', note: 'wall time' },
        { name: 'change burst ÷ HTTP floor change burst', target: on('change-burst'), reference: 'floor/change-burst', metric: 'wallMs', note: 'wall time' },
        { name: 'hold burst ÷ change burst', target: on('hold-burst'), reference: on('change-burst'), metric: 'wallMs', note: 'wall time' },
        { name: 'hold + capture ÷ one change, time per operation on the hot row', target: on('hot-change'), reference: on('hot-hold-capture'), metric: 'reqPerSec', referenceMetric: 'pairsPerSec', note: 'changes/s ÷ pairs/s' },
      ]
    case 'events':
      return [
        { name: 'burst, EVENTS=on ÷ off', target: on('burst-events-on'), reference: on('burst-events-off'), metric: 'wallMs', note: 'wall time (above 1: events cost time)' },
        { name: 'hot row, EVENTS=on ÷ off', target: on('hot-events-on'), reference: on('hot-events-off'), metric: 'reqPerSec', note: 'req/s (below 1: events cost throughput)' },
      ]
  }
}

export interface Goal {
  name: string
  target: string
  value: number | null
  met: boolean
}

export interface BenchResult {
  schema: 'balance-api-bench/2'
  startedAt: string
  finishedAt: string
  command: string
  ok: boolean
  failures: string[]
  machine: {
    cpuModel: string
    cores: number
    memoryGiB: number
    os: string
    node: string
    postgres: string
    /** Settings that move these numbers (synchronous_commit above all). */
    postgresSettings?: Record<string, string>
    database: 'external' | 'embedded'
    loadAverageAtStart: number[]
    loadAverageAtEnd: number[]
    /** The 1-minute load average sampled after every measurement: median (min–max). */
    loadAverageDuring?: Spread
  }
  settings: {
    quick: boolean
    /** Every strategy, scenario and GROUP_COMMIT value (the run bench/REPORT.md comes from). */
    full?: boolean
    strategies: StrategyName[]
    scenarios: ScenarioName[]
    groupCommit: GroupCommitMode[]
    maxBatch: number
    batchSizes: number[]
    batchSeconds: number
    repetitions: number
    burstRequests: number
    loadSeconds: number
    warmupSeconds: number
    connections: number
    ceilingWorkers: number
    spreadUsers: number
    poolSize: number
    /** The service of the feature scenarios (absent when none ran). */
    featureService?: FeatureService
    bulkRequests?: number
    bulkChangesPerRequest?: number
    bulkUsers?: number
    featureSeconds?: number
    featureBurst?: number
  }
  scenarios: Partial<Record<ScenarioName, ScenarioResult>>
  goals: Goal[]
}

export function spread (values: number[]): Spread {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  const median = sorted.length === 0
    ? NaN
    : sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
  return { median, min: sorted[0] ?? NaN, max: sorted.at(-1) ?? NaN }
}

/** Medians (with min–max) of every figure over the repetitions, or FAILED when any repetition failed its checks. */
export function summarise (target: TargetResult): void {
  target.status = target.runs.length > 0 && target.runs.every((run) => run.ok) ? 'ok' : 'FAILED'
  target.summary = {}
  if (target.status === 'FAILED') return
  const names = new Set(target.runs.flatMap((run) => Object.keys(run.figures)))
  for (const name of names) {
    target.summary[name] = spread(target.runs.map((run) => run.figures[name]).filter((v): v is number => v !== undefined))
  }
}

export function paired (scenario: ScenarioResult, target: TargetResult | undefined, reference: TargetResult | undefined,
  ratio: (a: number, b: number) => number, metric: string = scenario.metric, referenceMetric: string = metric): Spread | undefined {
  if (target?.status !== 'ok' || reference?.status !== 'ok') return undefined
  const values = target.runs.flatMap((run) => {
    const other = reference.runs.find((r) => r.repetition === run.repetition)
    const a = run.figures[metric]
    const b = other?.figures[referenceMetric]
    return a === undefined || b === undefined || a === 0 || b === 0 ? [] : [ratio(a, b)]
  })
  return values.length > 0 ? spread(values) : undefined
}

/**
 * Per-repetition ratios of every service target: ÷ its strategy's ceiling, ÷ the HTTP floor, ÷ the per-commit ceiling
 * (from the ceilings scenario of the same run, req/s scenarios), and group commit on against off.
 */
export function computeRatios (scenario: ScenarioResult, strategies: StrategyName[], perCommit?: TargetResult): void {
  scenario.ratios = {}
  const divide = (a: number, b: number): number => a / b
  const speedup = scenario.metric === 'wallMs' ? (on: number, off: number) => off / on : divide
  for (const strategy of strategies) {
    for (const mode of ['on', 'off'] as const) {
      const service = scenario.targets[serviceKey(strategy, mode)]
      if (service?.status !== 'ok') continue
      const ratios: Ratios = {}
      const toCeiling = paired(scenario, service, scenario.targets[targetKey({ kind: 'ceiling', strategy })], divide)
      const toFloor = paired(scenario, service, scenario.targets.floor, divide)
      const toPerCommit = scenario.metric === 'reqPerSec' ? paired(scenario, service, perCommit, divide, 'reqPerSec', 'changesPerSec') : undefined
      const speedupVsOff = mode === 'on' ? paired(scenario, service, scenario.targets[serviceKey(strategy, 'off')], speedup) : undefined
      const rssToFloor = scenario.metric === 'wallMs' ? paired(scenario, service, scenario.targets.floor, divide, 'peakRssMb') : undefined
      if (rssToFloor !== undefined) ratios.rssToFloor = rssToFloor
      if (toCeiling !== undefined) ratios.toCeiling = toCeiling
      if (toFloor !== undefined) ratios.toFloor = toFloor
      if (toPerCommit !== undefined) ratios.toPerCommit = toPerCommit
      if (speedupVsOff !== undefined) ratios.speedupVsOff = speedupVsOff
      scenario.ratios[`${strategy}:${mode}`] = ratios
    }
  }
}

/** A goal row: `value` is the median of per-repetition ratios of this run; null when a side FAILED or was not measured. */
function goal (name: string, target: string, value: number | undefined, met: (value: number) => boolean): Goal {
  return { name, target, value: value ?? null, met: value !== undefined && met(value) }
}

/**
 * The benchmark targets, evaluated on this run: every strategy measured with group commit on, against the HTTP floor
 * (and the per-commit ceiling) of the same run, and the feature service's client and bulk targets.
 */
export function evaluateGoals (result: BenchResult): Goal[] {
  const goals: Goal[] = []
  const at = (limit: number) => (value: number) => value <= limit
  const least = (limit: number) => (value: number) => value >= limit
  if (result.settings.groupCommit.includes('on')) {
    const { hot, spread: spreadScenario } = result.scenarios
    for (const strategy of result.settings.strategies) {
      const on = `${strategy}:on` as const
      for (const [name, title, limit] of [['burst', 'seed burst', 1.2], ['keyed-burst', 'keyed seed burst', 1.3]] as const) {
        const scenario = result.scenarios[name]
        if (scenario === undefined) continue
        goals.push(goal(`${strategy}, group commit on: ${title} wall time ÷ HTTP floor`, `≤ ${limit}`, scenario.ratios[on]?.toFloor?.median, at(limit)))
        goals.push(goal(`${strategy}, group commit on: server peak RSS through the ${title} ÷ the HTTP floor's`, '≤ 1.4', scenario.ratios[on]?.rssToFloor?.median, at(1.4)))
      }
      if (hot !== undefined) {
        goals.push(goal(`${strategy}, group commit on: hot row req/s at c=${result.settings.connections} ÷ HTTP floor`, '≥ 0.6', hot.ratios[on]?.toFloor?.median, least(0.6)))
        if (result.scenarios.ceilings !== undefined) goals.push(goal(`${strategy}, group commit on: hot row req/s ÷ per-commit ceiling`, '≥ 2.0', hot.ratios[on]?.toPerCommit?.median, least(2)))
      }
      if (spreadScenario !== undefined && result.settings.groupCommit.includes('off')) {
        goals.push(goal(`${strategy}: spread req/s (${result.settings.spreadUsers.toLocaleString('en-US')} users), group commit on ÷ off`, '≥ 1.0 (no slower)', spreadScenario.ratios[on]?.speedupVsOff?.median, least(1)))
      }
    }
  }
  const feature = result.settings.featureService
  if (feature !== undefined) {
    const label = `${feature.strategy}, group commit ${feature.groupCommit}`
    const client = result.scenarios['client-burst']
    if (client !== undefined) {
      goals.push(goal(`${label}: seed burst through balance-api/client ÷ the same client against the HTTP floor`, '≤ 1.3', client.ratios[`${feature.strategy}:${feature.groupCommit}`]?.toFloor?.median, at(1.3)))
    }
    const bulk = result.scenarios.bulk
    if (bulk !== undefined) {
      const n = result.settings.bulkRequests ?? 0
      goals.push(goal(`${label}: bulk (${n} requests × ${result.settings.bulkChangesPerRequest ?? '?'} changes over ${(result.settings.bulkUsers ?? 0).toLocaleString('en-US')} users) ÷ single PATCHes, changes/s`, '≥ 10', bulk.pairs?.[featurePairs('bulk', feature)[0]!.name]?.median, least(10)))
    }
  }
  return goals
}

/** The feature scenarios' named comparisons (featurePairs), paired per repetition. */
export function computePairs (scenario: ScenarioResult, feature: FeatureService): void {
  if (scenario.name !== 'client-burst' && scenario.name !== 'bulk' && scenario.name !== 'holds' && scenario.name !== 'events') return
  scenario.pairs = {}
  for (const pair of featurePairs(scenario.name, feature)) {
    const value = paired(scenario, scenario.targets[pair.target], scenario.targets[pair.reference], (a, b) => a / b, pair.metric, pair.referenceMetric ?? pair.metric)
    if (value !== undefined) scenario.pairs[pair.name] = value
  }
}
