import type { StrategyName } from '../src/config.js'
import type { BatchLock } from '../src/strategies/types.js'
import type { GroupCommitMode, ScenarioName } from './options.js'

/**
 * What one measured thing is: the HTTP floor, a strategy's service (with group commit on or off), a strategy's
 * one-change SQL straight through pg.Pool (its ceiling), the per-commit ceiling (one conditional UPDATE per commit on
 * one hot row) or the batch SQL at one batch size (the batched ceiling).
 */
export type TargetKind = 'floor' | 'service' | 'ceiling' | 'per-commit' | 'batch'
export type TargetKey = 'floor' | `service:${StrategyName}:${GroupCommitMode}` | `ceiling:${StrategyName}` | 'per-commit' | `batch:${BatchLock}:${number}`

export interface TargetSpec {
  kind: TargetKind
  strategy?: StrategyName
  groupCommit?: GroupCommitMode
  lock?: BatchLock
  batchSize?: number
}

export function targetKey (spec: TargetSpec): TargetKey {
  switch (spec.kind) {
    case 'floor': return 'floor'
    case 'per-commit': return 'per-commit'
    case 'service': return `service:${spec.strategy!}:${spec.groupCommit!}`
    case 'ceiling': return `ceiling:${spec.strategy!}`
    case 'batch': return `batch:${spec.lock!}:${spec.batchSize!}`
  }
}

export function serviceKey (strategy: StrategyName, groupCommit: GroupCommitMode): TargetKey {
  return targetKey({ kind: 'service', strategy, groupCommit })
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
}

export type RatioKey = `${StrategyName}:${GroupCommitMode}`

export interface ScenarioResult {
  name: ScenarioName
  /** The figure the ratios compare: reqPerSec or changesPerSec (higher is better) or wallMs (lower is better). */
  metric: 'reqPerSec' | 'wallMs' | 'changesPerSec'
  targets: Partial<Record<TargetKey, TargetResult>>
  ratios: Partial<Record<RatioKey, Ratios>>
}

export function metricOf (scenario: ScenarioName): ScenarioResult['metric'] {
  return scenario === 'ceilings' ? 'changesPerSec' : scenario === 'burst' || scenario === 'keyed-burst' ? 'wallMs' : 'reqPerSec'
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

function paired (scenario: ScenarioResult, target: TargetResult | undefined, reference: TargetResult | undefined,
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
      if (toCeiling !== undefined) ratios.toCeiling = toCeiling
      if (toFloor !== undefined) ratios.toFloor = toFloor
      if (toPerCommit !== undefined) ratios.toPerCommit = toPerCommit
      if (speedupVsOff !== undefined) ratios.speedupVsOff = speedupVsOff
      scenario.ratios[`${strategy}:${mode}`] = ratios
    }
  }
}

/** The benchmark targets, evaluated on this run for every strategy measured with group commit on. */
export function evaluateGoals (result: BenchResult): Goal[] {
  const goals: Goal[] = []
  if (!result.settings.groupCommit.includes('on')) return goals
  const { hot, spread: spreadScenario } = result.scenarios
  for (const strategy of result.settings.strategies) {
    const on = `${strategy}:on` as const
    if (hot !== undefined && result.scenarios.ceilings !== undefined) {
      const value = hot.ratios[on]?.toPerCommit?.median
      goals.push({ name: `${strategy}: hot row req/s with group commit ÷ per-commit ceiling`, target: '≥ 2.0', value: value ?? null, met: value !== undefined && value >= 2 })
    }
    for (const name of ['burst', 'keyed-burst'] as const) {
      const scenario = result.scenarios[name]
      if (scenario === undefined) continue
      const value = scenario.ratios[on]?.toFloor?.median
      goals.push({ name: `${strategy}: ${name === 'burst' ? 'seed burst' : 'keyed seed burst'} wall time with group commit ÷ HTTP floor`, target: '≤ 1.5', value: value ?? null, met: value !== undefined && value <= 1.5 })
    }
    for (const name of ['burst', 'keyed-burst'] as const) {
      const target = result.scenarios[name]?.targets[serviceKey(strategy, 'on')]
      if (target === undefined) continue
      const rss = target.status === 'ok' ? Math.max(...target.runs.map((run) => run.figures.peakRssMb ?? Infinity)) : undefined
      goals.push({ name: `${strategy}: peak RSS through the ${name === 'burst' ? 'seed burst' : 'keyed seed burst'} with group commit (max of repetitions), MB`, target: '≤ 200', value: rss ?? null, met: rss !== undefined && rss <= 200 })
    }
    if (spreadScenario !== undefined && result.settings.groupCommit.includes('off')) {
      const value = spreadScenario.ratios[on]?.speedupVsOff?.median
      goals.push({ name: `${strategy}: spread req/s, group commit on ÷ off`, target: '≥ 1.0 (no slower)', value: value ?? null, met: value !== undefined && value >= 1 })
    }
  }
  return goals
}
