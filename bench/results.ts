import type { StrategyName } from '../src/config.js'
import type { ScenarioName } from './options.js'

/** What one measured thing is: the HTTP floor, a strategy's service, or a strategy's SQL straight through pg.Pool. */
export type TargetKind = 'floor' | 'service' | 'ceiling'
export type TargetKey = 'floor' | `service:${StrategyName}` | `ceiling:${StrategyName}`

export function targetKey (kind: TargetKind, strategy?: StrategyName): TargetKey {
  return kind === 'floor' ? 'floor' : `${kind}:${strategy!}`
}

/** One repetition of one target in one scenario. A run whose checks fail keeps its figures, but is never summarised. */
export interface RunRecord {
  repetition: number
  ok: boolean
  failures: string[]
  /** Numeric figures (wallMs, reqPerSec, p50Ms, p99Ms, maxMs, peakRssMb, cpuMs, …). */
  figures: Record<string, number>
  /** The raw outcome (status counts, codes, errors) for the record. */
  detail: Record<string, unknown>
}

export interface Spread { median: number, min: number, max: number }

export interface TargetResult {
  kind: TargetKind
  strategy?: StrategyName
  runs: RunRecord[]
  /** 'FAILED' when any repetition broke an invariant: then there are no figures to report. */
  status: 'ok' | 'FAILED'
  summary: Record<string, Spread>
}

/** Service ÷ reference, per repetition (same repetition, so the same machine noise), then summarised. */
export interface Ratios {
  toCeiling?: Spread
  toFloor?: Spread
}

export interface ScenarioResult {
  name: ScenarioName
  /** The figure the ratios compare: reqPerSec (higher is better) or wallMs (lower is better). */
  metric: 'reqPerSec' | 'wallMs'
  targets: Partial<Record<TargetKey, TargetResult>>
  ratios: Partial<Record<StrategyName, Ratios>>
}

export interface Goal {
  name: string
  target: string
  value: number | null
  met: boolean
}

export interface BenchResult {
  schema: 'balance-api-bench/1'
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
  }
  settings: {
    quick: boolean
    strategies: StrategyName[]
    scenarios: ScenarioName[]
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

/** Per-repetition ratios service ÷ ceiling and service ÷ floor of the scenario's metric. */
export function computeRatios (scenario: ScenarioResult, strategies: StrategyName[]): void {
  scenario.ratios = {}
  const floor = scenario.targets.floor
  for (const strategy of strategies) {
    const service = scenario.targets[targetKey('service', strategy)]
    const ceiling = scenario.targets[targetKey('ceiling', strategy)]
    if (service?.status !== 'ok') continue
    const ratios: Ratios = {}
    const paired = (reference: TargetResult | undefined): Spread | undefined => {
      if (reference?.status !== 'ok') return undefined
      const values = service.runs.flatMap((run) => {
        const other = reference.runs.find((r) => r.repetition === run.repetition)
        const a = run.figures[scenario.metric]
        const b = other?.figures[scenario.metric]
        return a === undefined || b === undefined || b === 0 ? [] : [a / b]
      })
      return values.length > 0 ? spread(values) : undefined
    }
    const toCeiling = paired(ceiling)
    const toFloor = paired(floor)
    if (toCeiling !== undefined) ratios.toCeiling = toCeiling
    if (toFloor !== undefined) ratios.toFloor = toFloor
    scenario.ratios[strategy] = ratios
  }
}

/** The goals for this machine class, evaluated on this run. */
export function evaluateGoals (result: BenchResult): Goal[] {
  const goals: Goal[] = []
  const hot = result.scenarios.hot?.ratios.advisory?.toCeiling?.median
  if (result.scenarios.hot !== undefined && result.settings.strategies.includes('advisory')) {
    goals.push({ name: 'advisory hot-row req/s ÷ advisory database ceiling', target: '≥ 0.90', value: hot ?? null, met: hot !== undefined && hot >= 0.9 })
  }
  const burstRatio = result.scenarios.burst?.ratios.advisory?.toFloor?.median
  if (result.scenarios.burst !== undefined && result.settings.strategies.includes('advisory')) {
    goals.push({ name: 'advisory burst wall time ÷ HTTP floor burst', target: '≤ 2.0', value: burstRatio ?? null, met: burstRatio !== undefined && burstRatio <= 2.0 })
  }
  const burst = result.scenarios.burst
  if (burst !== undefined) {
    for (const strategy of result.settings.strategies) {
      const target = burst.targets[targetKey('service', strategy)]
      const rss = target?.status === 'ok' ? Math.max(...target.runs.map((run) => run.figures.peakRssMb ?? Infinity)) : undefined
      goals.push({ name: `${strategy} peak RSS through the burst (max of repetitions), MB`, target: '≤ 200', value: rss ?? null, met: rss !== undefined && rss <= 200 })
    }
  }
  return goals
}
