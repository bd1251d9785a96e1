import { existsSync } from 'node:fs'
import { mkdir, readFile, readdir, rename, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import type { StrategyName } from '../src/config.js'
import { BULK_CHANGES_PER_REQUEST, BULK_USERS, isFeatureScenario, scenarioNames, type GroupCommitMode, type ScenarioName } from './options.js'
import { projectRoot } from '../src/tooling/project-root.js'
import { featurePairs, serviceKey, spread, targetKey, type BenchResult, type FeatureService, type Goal, type ScenarioResult, type Spread, type TargetKey, type TargetResult } from './results.js'
import { barChart, formatNumber, type Bar } from './svg.js'

export interface WrittenFiles {
  json: string
  report: string
  charts: string[]
  readme?: string
}

const TITLES: Record<ScenarioName, string> = {
  ceilings: 'Database ceilings',
  burst: 'Seed burst',
  'keyed-burst': 'Keyed seed burst',
  hot: 'Hot row',
  spread: 'Spread',
  'client-burst': 'Seed burst through balance-api/client',
  bulk: 'Bulk changes',
  holds: 'Holds',
  events: 'Events',
}

const ON_COLOR = '#4269d0'
const OFF_COLOR = '#9aa5b1'
const ROW_LOCK_COLOR = '#3ca951'

function cell (s: Spread | undefined, digits = 0): string {
  if (s === undefined || !Number.isFinite(s.median)) return '—'
  const f = (v: number): string => digits === 0 ? Math.round(v).toLocaleString('en-US') : v.toFixed(digits)
  return s.max > s.min ? `${f(s.median)} (${f(s.min)}–${f(s.max)})` : f(s.median)
}

function ratioCell (s: Spread | undefined): string {
  if (s === undefined) return '—'
  return s.max > s.min ? `**${s.median.toFixed(2)}×** (${s.min.toFixed(2)}–${s.max.toFixed(2)})` : `**${s.median.toFixed(2)}×**`
}

function figure (target: TargetResult | undefined, name: string, digits = 0): string {
  if (target === undefined) return '—'
  if (target.status === 'FAILED') return '**FAILED**'
  return cell(target.summary[name], digits)
}

function modesOf (result: BenchResult): GroupCommitMode[] {
  return result.settings.groupCommit
}

function serviceLabel (strategy: StrategyName, mode: GroupCommitMode): string {
  return `**${strategy}** service, group commit **${mode}**`
}

function ceilingsSection (result: BenchResult, scenario: ScenarioResult): string {
  const s = result.settings
  const perCommit = scenario.targets['per-commit']
  const lines = [
    `## ${TITLES.ceilings}: what PostgreSQL allows on one hot row, no HTTP`,
    '',
    `- **Per-commit ceiling**: the pgbench shape of a single conditional update, through \`pg\` — one conditional \`UPDATE users SET balance = balance + $2 WHERE id = $1 AND balance + $2 >= 0\` ` +
      `per transaction (autocommit, a named prepared statement) on one hot row, ${s.poolSize} callers on ${s.poolSize} connections, ${s.loadSeconds} s. Every change is its own durable commit. ` +
      'Check: the balance fell by exactly the number of updates that reported a row (then one balancing journal entry keeps Σ journal = balance).',
    `- **Batched ceiling**: the service's group-commit statement \`BATCH_CHANGE_SQL\` (\`balance_change_batch\`, migration 0006) with N keyless −1 changes per call on one hot row, ` +
      `one caller (one batch in flight per user, as one instance has), ${s.batchSeconds} s per size. Checks: every row \`applied\`, one journal entry per change, the balance fell by exactly that, Σ journal = balance.`,
    '',
    '![changes per second: per-commit ceiling and the batch SQL by batch size](charts/ceilings.svg)',
    '',
    '| target | changes/s | ÷ per-commit ceiling | calls/s | p50 ms per call | p99 ms per call |',
    '|---|---|---|---|---|---|',
  ]
  lines.push(`| per-commit ceiling (one UPDATE per commit, ${s.poolSize} connections) | ${figure(perCommit, 'changesPerSec')} | 1 | ${figure(perCommit, 'callsPerSec')} | ${figure(perCommit, 'p50Ms', 2)} | ${figure(perCommit, 'p99Ms', 2)} |`)
  for (const target of batchTargets(scenario)) {
    const ratio = pairedRatio(target, perCommit, 'changesPerSec')
    lines.push(`| batch SQL, ${target.lock!} lock, **${target.batchSize!}** per call | ${figure(target, 'changesPerSec')} | ${ratioCell(ratio)} | ${figure(target, 'callsPerSec')} | ${figure(target, 'p50Ms', 2)} | ${figure(target, 'p99Ms', 2)} |`)
  }
  return lines.join('\n')
}

function batchTargets (scenario: ScenarioResult): TargetResult[] {
  return Object.values(scenario.targets)
    .filter((target): target is TargetResult => target?.kind === 'batch')
    .sort((a, b) => (a.lock ?? '').localeCompare(b.lock ?? '') || (a.batchSize ?? 0) - (b.batchSize ?? 0))
}

/** target ÷ reference of one figure, paired by repetition. */
function pairedRatio (target: TargetResult | undefined, reference: TargetResult | undefined, name: string): Spread | undefined {
  if (target?.status !== 'ok' || reference?.status !== 'ok') return undefined
  const values = target.runs.flatMap((run) => {
    const a = run.figures[name]
    const b = reference.runs.find((r) => r.repetition === run.repetition)?.figures[name]
    return a === undefined || b === undefined || b === 0 ? [] : [a / b]
  })
  return values.length > 0 ? spread(values) : undefined
}

function burstSection (result: BenchResult, scenario: ScenarioResult): string {
  const n = result.settings.burstRequests.toLocaleString('en-US')
  const keyed = scenario.name === 'keyed-burst'
  const lines = [
    `## ${TITLES[scenario.name]}: ${n} simultaneous \`PATCH -2\` on one user holding ${n}, one fresh socket each${keyed ? ', each with its own `Idempotency-Key`' : ''}`,
    '',
    `Checks: exactly ${(result.settings.burstRequests / 2).toLocaleString('en-US')} × 200 and as many × 409 \`INSUFFICIENT_FUNDS\`, no connection error, final balance 0, one journal entry per success, Σ journal = balance for every user, nothing negative.` +
      (keyed ? ' Every key is new (a random prefix per measurement), so every request executes once; the HTTP floor gets the same headers and keeps each key\'s answer in memory.' : ''),
    '',
    `![${scenario.name} wall time, group commit on and off](charts/${scenario.name}.svg)`,
    '',
    '| target | wall time, ms | ÷ HTTP floor | on vs off (speed-up) | ÷ its ceiling | p50 ms | p99 ms | max ms | server peak RSS, MB | RSS ÷ floor\'s | server CPU, ms |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
  ]
  const floor = scenario.targets.floor
  lines.push(`| HTTP floor (Fastify, no database) | ${figure(floor, 'wallMs')} | 1 | — | — | ${figure(floor, 'p50Ms')} | ${figure(floor, 'p99Ms')} | ${figure(floor, 'maxMs')} | ${figure(floor, 'peakRssMb')} | 1 | ${figure(floor, 'cpuMs')} |`)
  for (const strategy of result.settings.strategies) {
    for (const mode of modesOf(result)) {
      const service = scenario.targets[serviceKey(strategy, mode)]
      const ratios = scenario.ratios[`${strategy}:${mode}`]
      lines.push(`| ${serviceLabel(strategy, mode)} | ${figure(service, 'wallMs')} | ${ratioCell(ratios?.toFloor)} | ${ratioCell(ratios?.speedupVsOff)} | ${ratioCell(ratios?.toCeiling)} | ${figure(service, 'p50Ms')} | ${figure(service, 'p99Ms')} | ${figure(service, 'maxMs')} | ${figure(service, 'peakRssMb')} | ${ratioCell(ratios?.rssToFloor)} | ${figure(service, 'cpuMs')} |`)
    }
    const ceiling = scenario.targets[targetKey({ kind: 'ceiling', strategy })]
    if (ceiling !== undefined) lines.push(`| ${strategy} ceiling (its one-change SQL via pg.Pool) | ${figure(ceiling, 'wallMs')} | — | — | 1 | ${figure(ceiling, 'p50Ms')} | ${figure(ceiling, 'p99Ms')} | ${figure(ceiling, 'maxMs')} | — | — | — |`)
  }
  lines.push('', 'Wall time: lower is better. "on vs off": off ÷ on of the same repetition, so above 1 means group commit made it faster.')
  return lines.join('\n')
}

function loadSection (result: BenchResult, scenario: ScenarioResult): string {
  const s = result.settings
  const heading = scenario.name === 'hot'
    ? `## ${TITLES.hot}: ${s.connections} connections, ${s.loadSeconds} s, \`PATCH -1\` on one user whose balance never runs out`
    : `## ${TITLES.spread}: ${s.connections} connections, ${s.loadSeconds} s, \`PATCH -1\` on a random one of ${s.spreadUsers.toLocaleString('en-US')} users`
  const lines = [
    heading,
    '',
    `Checks: no error, no timeout, no non-2xx; one journal entry per 2xx (the ceiling: per applied call, exactly); Σ journal = balance for every user; nothing negative. "Its ceiling" is the strategy's one-change SQL driven by ${s.ceilingWorkers} async workers through a \`pg.Pool\` of ${s.poolSize}, no HTTP, no ORM; the per-commit ceiling is in the section above.`,
    '',
    `![${scenario.name} req/s, group commit on and off](charts/${scenario.name}.svg)`,
    '',
    '| target | req/s | ÷ per-commit ceiling | on vs off (speed-up) | ÷ its ceiling | ÷ HTTP floor | p50 ms | p99 ms | server CPU µs/request | server peak RSS, MB |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ]
  const floor = scenario.targets.floor
  lines.push(`| HTTP floor (Fastify, no database) | ${figure(floor, 'reqPerSec')} | — | — | — | 1 | ${figure(floor, 'p50Ms', 1)} | ${figure(floor, 'p99Ms', 1)} | ${figure(floor, 'cpuUsPerRequest')} | ${figure(floor, 'peakRssMb')} |`)
  for (const strategy of result.settings.strategies) {
    for (const mode of modesOf(result)) {
      const service = scenario.targets[serviceKey(strategy, mode)]
      const ratios = scenario.ratios[`${strategy}:${mode}`]
      lines.push(`| ${serviceLabel(strategy, mode)} | ${figure(service, 'reqPerSec')} | ${ratioCell(ratios?.toPerCommit)} | ${ratioCell(ratios?.speedupVsOff)} | ${ratioCell(ratios?.toCeiling)} | ${ratioCell(ratios?.toFloor)} | ${figure(service, 'p50Ms', 1)} | ${figure(service, 'p99Ms', 1)} | ${figure(service, 'cpuUsPerRequest')} | ${figure(service, 'peakRssMb')} |`)
    }
    const ceiling = scenario.targets[targetKey({ kind: 'ceiling', strategy })]
    if (ceiling !== undefined) lines.push(`| ${strategy} ceiling (its one-change SQL via pg.Pool) | ${figure(ceiling, 'reqPerSec')} | — | — | 1 | — | ${figure(ceiling, 'p50Ms', 1)} | ${figure(ceiling, 'p99Ms', 1)} | — | — |`)
  }
  lines.push('', '"on vs off": on ÷ off of the same repetition, so above 1 means group commit made it faster.')
  return lines.join('\n')
}

const HTTP_SCENARIOS = ['burst', 'keyed-burst', 'hot', 'spread'] as const

function batchSizeSection (result: BenchResult): string {
  const rows: string[] = []
  for (const name of HTTP_SCENARIOS) {
    const scenario = result.scenarios[name]
    if (scenario === undefined) continue
    for (const strategy of result.settings.strategies) {
      const target = scenario.targets[serviceKey(strategy, 'on')]
      if (target === undefined) continue
      if (target.status === 'FAILED') { rows.push(`| ${TITLES[name]} | ${strategy} | **FAILED** | | | | | | |`); continue }
      if (target.summary.batches === undefined) { rows.push(`| ${TITLES[name]} | ${strategy} | no batch metrics | | | | | | |`); continue }
      rows.push(`| ${TITLES[name]} | ${strategy} | ${figure(target, 'batches')} | ${figure(target, 'batchedChanges')} | ${figure(target, 'batchMean', 1)} | ${figure(target, 'batchP50', 1)} | ${figure(target, 'batchP90', 1)} | ${figure(target, 'batchMax')} | ${figure(target, 'peakRssMb')} |`)
    }
  }
  if (rows.length === 0) return ''
  return [
    '## Batch sizes with group commit on: changes per batch, from the service\'s own /metrics',
    '',
    `From the service's own \`GET /metrics\` (histogram \`balance_batch_size\`, counter \`balance_batches_total\`), scraped before and after each measurement; the difference is that measurement's batches. ` +
      `p50 and p90 are interpolated inside the histogram's buckets (as PromQL's \`histogram_quantile\` does); max is the upper bound of the highest non-empty bucket (at most GROUP_COMMIT_MAX_BATCH = ${result.settings.maxBatch}). ` +
      'A batch of 1 is a change that found no other change of its user in flight.',
    '',
    '| scenario | strategy | batches | changes in batches | mean | p50 | p90 | max | server peak RSS, MB |',
    '|---|---|---|---|---|---|---|---|---|',
    ...rows,
  ].join('\n')
}

function rssSection (result: BenchResult): string {
  const rows: string[] = []
  for (const name of HTTP_SCENARIOS) {
    const scenario = result.scenarios[name]
    if (scenario === undefined) continue
    const cells = result.settings.strategies.flatMap((strategy) => modesOf(result).map((mode) => figure(scenario.targets[serviceKey(strategy, mode)], 'peakRssMb')))
    rows.push(`| ${TITLES[name]} | ${figure(scenario.targets.floor, 'peakRssMb')} | ${cells.join(' | ')} |`)
  }
  if (rows.length === 0) return ''
  const columns = result.settings.strategies.flatMap((strategy) => modesOf(result).map((mode) => `${strategy} ${mode}`))
  return [
    '## Peak RSS of the server per scenario, MB, next to the HTTP floor\'s',
    '',
    'VmHWM after a reset (`/proc/<pid>/clear_refs`) and 50 ms VmRSS samples, per measurement; median (min–max) of the repetitions. Target: through the bursts with group commit, ≤ 1.4× the HTTP floor\'s peak of the same repetition (the burst sections give that ratio).',
    '',
    '![peak RSS through the bursts, group commit on and off](charts/rss.svg)',
    '',
    `| scenario | HTTP floor | ${columns.join(' | ')} |`,
    `|---|---|${columns.map(() => '---').join('|')}|`,
    ...rows,
  ].join('\n')
}

/** Bars for every strategy × GROUP_COMMIT value: on in colour, off in grey. */
function serviceBars (result: BenchResult, scenario: ScenarioResult, metric: string, withCeiling: boolean): Bar[] {
  return result.settings.strategies.flatMap((strategy) => modesOf(result).map((mode) => {
    const service = scenario.targets[serviceKey(strategy, mode)]
    const ceiling = scenario.targets[targetKey({ kind: 'ceiling', strategy })]
    const value = service?.summary[metric]
    const reference = withCeiling && mode === modesOf(result)[0] && ceiling?.status === 'ok' ? ceiling.summary[metric] : undefined
    return {
      label: `${strategy} ${mode}`,
      value: value?.median ?? 0,
      color: mode === 'on' ? ON_COLOR : OFF_COLOR,
      ...(value === undefined ? {} : { min: value.min, max: value.max }),
      ...(reference === undefined ? {} : { marker: { label: 'ceiling', value: reference.median } }),
      failed: service?.status !== 'ok',
    }
  }))
}

const GROUP_LEGEND = [
  { label: 'group commit on', color: ON_COLOR, kind: 'box' as const },
  { label: 'off', color: OFF_COLOR, kind: 'box' as const },
]

function chartFor (result: BenchResult, scenario: ScenarioResult): string {
  const metric = scenario.metric
  const median = (target: TargetResult | undefined, name = metric): number | undefined => target?.status === 'ok' ? target.summary[name]?.median : undefined
  if (scenario.name === 'ceilings') {
    const bars: Bar[] = batchTargets(scenario).map((target) => ({
      label: `${target.lock!} ×${target.batchSize!}`,
      value: target.summary.changesPerSec?.median ?? 0,
      color: target.lock === 'advisory' ? ON_COLOR : ROW_LOCK_COLOR,
      ...(target.summary.changesPerSec === undefined ? {} : { min: target.summary.changesPerSec.min, max: target.summary.changesPerSec.max }),
      failed: target.status !== 'ok',
    }))
    const perCommit = median(scenario.targets['per-commit'])
    const locks = [...new Set(batchTargets(scenario).map((target) => target.lock!))]
    return barChart({
      title: 'One hot row, database only: changes per second (higher is better)',
      unit: 'changes per second',
      bars,
      lines: perCommit === undefined ? [] : [{ label: 'per-commit ceiling', value: perCommit }],
      legend: [
        ...locks.map((lock) => ({ label: `batch SQL, ${lock} lock, by batch size`, color: lock === 'advisory' ? ON_COLOR : ROW_LOCK_COLOR, kind: 'box' as const })),
        { label: 'one UPDATE per commit · whiskers: min–max', color: '#555', kind: 'dash' },
      ],
    })
  }
  const withCeiling = scenario.name === 'burst' || scenario.name === 'hot'
  const bars = serviceBars(result, scenario, metric, withCeiling)
  const floorValue = median(scenario.targets.floor)
  const lines = floorValue === undefined ? [] : [{ label: 'HTTP floor', value: floorValue }]
  const perCommit = median(result.scenarios.ceilings?.targets['per-commit'], 'changesPerSec')
  if (scenario.name === 'hot' && perCommit !== undefined) lines.push({ label: 'per-commit ceiling', value: perCommit })
  const title = metric === 'wallMs'
    ? `${TITLES[scenario.name]}: ${result.settings.burstRequests.toLocaleString('en-US')} simultaneous PATCH, wall time (lower is better)`
    : `${TITLES[scenario.name]}: service req/s, ${result.settings.connections} connections (higher is better)`
  return barChart({
    title,
    unit: metric === 'wallMs' ? 'wall time, ms' : 'requests per second',
    bars,
    lines,
    legend: [...GROUP_LEGEND, ...(withCeiling ? [{ label: 'its one-change ceiling', color: '#b3261e', kind: 'line' as const }] : []), { label: 'references · whiskers: min–max', color: '#555', kind: 'dash' }],
  })
}

function rssChart (result: BenchResult): string | undefined {
  const bursts = (['burst', 'keyed-burst'] as const).filter((name) => result.scenarios[name] !== undefined)
  if (bursts.length === 0) return undefined
  const floorTarget = result.scenarios[bursts[0]!]!.targets.floor
  const floorRss = floorTarget?.status === 'ok' ? floorTarget.summary.peakRssMb?.median : undefined
  const bars: Bar[] = bursts.flatMap((name) => result.settings.strategies.flatMap((strategy) => modesOf(result).map((mode) => {
    const target = result.scenarios[name]!.targets[serviceKey(strategy, mode)]
    const value = target?.summary.peakRssMb
    return {
      label: `${name === 'burst' ? '' : 'keyed '}${strategy} ${mode}`,
      value: value?.median ?? 0,
      color: mode === 'on' ? ON_COLOR : OFF_COLOR,
      ...(value === undefined ? {} : { min: value.min, max: value.max }),
      failed: target?.status !== 'ok',
    }
  })))
  return barChart({
    title: 'Peak RSS of the server through the bursts, MB (lower is better)',
    unit: 'MB',
    bars,
    lines: floorRss === undefined ? [] : [{ label: 'target: 1.4 × the floor\'s seed-burst peak', value: 1.4 * floorRss }],
    legend: [...GROUP_LEGEND, { label: 'target · whiskers: min–max', color: '#555', kind: 'dash' }],
  })
}

/** A goal's ratio with three decimals, so a value just past its target (1.2003 against ≤ 1.2) does not read as on it. */
function goalValue (goal: Goal): string {
  return goal.value === null ? 'FAILED or not measured' : goal.value < 100 ? goal.value.toFixed(3) : formatNumber(goal.value)
}

function goalsSection (result: BenchResult): string {
  if (result.goals.length === 0) return ''
  const lines = [
    '## Targets: medians of same-repetition ratios of this run (benchmark goals, not timed tests)',
    '',
    'Each ratio is taken within one repetition (the service and its reference measured minutes apart on the same machine), then the median over the repetitions is compared with the target.',
    '',
    '| goal | target | this run | |',
    '|---|---|---|---|',
  ]
  for (const goal of result.goals) {
    lines.push(`| ${goal.name} | ${goal.target} | ${goalValue(goal)} | ${goal.met ? '✅ met' : '❌ missed'} |`)
  }
  return lines.join('\n')
}

function failuresSection (result: BenchResult): string {
  if (result.ok) return ''
  return ['## FAILED checks', '', 'These measurements broke an invariant; they are reported as FAILED, never as numbers.', '',
    ...result.failures.map((failure) => `- ${failure}`)].join('\n')
}

function loadCell (m: BenchResult['machine']): string {
  const during = m.loadAverageDuring === undefined ? '' : `, during (after each measurement) ${cell(m.loadAverageDuring, 2)}`
  return `at start ${m.loadAverageAtStart.join(' / ')}${during}, at end ${m.loadAverageAtEnd.join(' / ')} — ${m.cores} cores; the box may be shared: compare same-run ratios`
}

export function renderReport (result: BenchResult, jsonName: string): string {
  const m = result.machine
  const s = result.settings
  const sections = [
    '# balance-api benchmark',
    '',
    '<!-- Generated by bench/report.ts from the raw results; do not edit by hand: run `npm run bench` (or `npm run bench:report`). -->',
    '',
    `**${result.ok ? 'All invariant checks passed.' : 'FAILED: some measurements broke an invariant (see below).'}** ` +
      `Run ${result.startedAt} → ${result.finishedAt}, raw results: [results/${jsonName}](results/${jsonName}).`,
    '',
    `Command: \`${result.command}\``,
    '',
    [
      `| machine | |`,
      '|---|---|',
      `| CPU | ${m.cpuModel}, ${m.cores} cores |`,
      `| memory | ${m.memoryGiB} GiB |`,
      `| OS | ${m.os} |`,
      `| Node | ${m.node} |`,
      `| PostgreSQL | ${m.postgres} (${m.database === 'external' ? 'the machine\'s server, DATABASE_URL' : 'embedded'}); ${Object.entries(m.postgresSettings ?? {}).map(([k, v]) => `${k}=${v}`).join(', ')} |`,
      `| load average (1 min; 1/5/15 at start and end) | ${loadCell(m)} |`,
      `| settings | pool (DB_POOL_MAX and the ceilings' pg.Pool) ${s.poolSize}; GROUP_COMMIT ${s.groupCommit.join(' and ')}, GROUP_COMMIT_MAX_BATCH ${s.maxBatch}; ` +
        `${s.repetitions} repetition(s), median (min–max); burst ${s.burstRequests}; loads ${s.loadSeconds} s × ${s.connections} connections after ${s.warmupSeconds} s warm-up; ` +
        `${s.spreadUsers} spread users; batch sizes ${s.batchSizes.join(', ')} × ${s.batchSeconds} s${s.quick ? '; **--quick**' : ''} |`,
    ].join('\n'),
    '',
    goalsSection(result),
    failuresSection(result),
    ...scenarioNames.flatMap((name) => {
      const scenario = result.scenarios[name]
      if (scenario === undefined) return []
      if (name === 'ceilings') return [ceilingsSection(result, scenario)]
      if (isFeatureScenario(name)) return [featureSection(result, scenario)]
      return [name === 'burst' || name === 'keyed-burst' ? burstSection(result, scenario) : loadSection(result, scenario)]
    }),
    batchSizeSection(result),
    rssSection(result),
    methodSection(result),
  ]
  return sections.filter((section) => section !== '').join('\n\n').replace(/\n{3,}/g, '\n\n') + '\n'
}

/** The feature service of a result that ran feature scenarios (older results have none: advisory, on). */
function featureOf (result: BenchResult): FeatureService {
  return result.settings.featureService ?? { strategy: 'advisory', groupCommit: 'on' }
}

function pairRows (result: BenchResult, scenario: ScenarioResult): string[] {
  if (scenario.name !== 'bulk' && scenario.name !== 'holds' && scenario.name !== 'events') return []
  const pairs = featurePairs(scenario.name, featureOf(result))
  if (pairs.length === 0) return []
  return ['', '| comparison (same repetition, then the median) | of | ratio |', '|---|---|---|',
    ...pairs.map((pair) => `| ${pair.name} | ${pair.note} | ${ratioCell(scenario.pairs?.[pair.name])} |`)]
}

function featureSection (result: BenchResult, scenario: ScenarioResult): string {
  const s = result.settings
  const f = featureOf(result)
  const n = s.burstRequests.toLocaleString('en-US')
  const service = serviceKey(f.strategy, f.groupCommit)
  const who = `the **${f.strategy}** service with group commit **${f.groupCommit}** only (the strategy scenarios above compare strategies and group commit on/off)`
  const target = (key: TargetKey): TargetResult | undefined => scenario.targets[key]
  const row = (label: string, key: TargetKey, names: Array<[string, number?]>): string =>
    `| ${label} | ${names.map(([name, digits]) => figure(target(key), name, digits ?? 0)).join(' | ')} |`
  if (scenario.name === 'client-burst') {
    const ratios = scenario.ratios[`${f.strategy}:${f.groupCommit}`]
    return [
      `## ${TITLES['client-burst']}: ${n} simultaneous \`changeBalance({ amount: -2 })\` from one \`BalanceClient\` with its defaults, service against the HTTP floor`,
      '',
      `One \`BalanceClient\` (\`bench/client-burst.mjs\`, its own process; Node's fetch, so keep-alive connections it opens as it needs them) with its defaults: a fresh \`Idempotency-Key\` per call, ` +
        'up to 5 attempts on 502/503/504 or no answer, a 10 s timeout per attempt, retried with the same key. The HTTP floor answers a key it has seen with the first answer, as the service does. ' +
        `Measured on ${who}. Checks: exactly ${(s.burstRequests / 2).toLocaleString('en-US')} successes and as many \`InsufficientFundsError\`, no call without an answer; on the service final balance 0, one journal entry per success, Σ journal = balance.`,
      '',
      '| target | wall time, ms | ÷ the same client against the HTTP floor | p50 ms | p99 ms | max ms | calls retried | attempts | server peak RSS, MB | server CPU, ms |',
      '|---|---|---|---|---|---|---|---|---|---|',
      ...([['HTTP floor, through the client', 'floor', '1'], [`${serviceLabel(f.strategy, f.groupCommit)}, through the client`, service, ratioCell(ratios?.toFloor)]] as const).map(([label, key, ratio]) =>
        `| ${label} | ${figure(target(key), 'wallMs')} | ${ratio} | ${['p50Ms', 'p99Ms', 'maxMs', 'retriedCalls', 'attempts', 'peakRssMb', 'cpuMs'].map((name) => figure(target(key), name)).join(' | ')} |`),
    ].join('\n')
  }
  if (scenario.name === 'bulk') {
    const requests = s.bulkRequests ?? 0
    const per = s.bulkChangesPerRequest ?? BULK_CHANGES_PER_REQUEST
    const users = (s.bulkUsers ?? BULK_USERS).toLocaleString('en-US')
    return [
      `## ${TITLES.bulk}: ${requests} \`POST /api/balance/batch\` of ${per} changes each against ${(requests * per).toLocaleString('en-US')} single \`PATCH /api/balance\`, the same deposits over ${users} users`,
      '',
      `Change i goes to user i mod ${users} either way. Singles: autocannon, ${s.connections} keep-alive connections, exactly ${(requests * per).toLocaleString('en-US')} requests; bulk: 10 connections, exactly ${requests} requests (default mode: each change answered on its own). ` +
        `Changes/s = changes ÷ the time from the first request to the last answer. Measured on ${who}; which goes first alternates per repetition. Checks: every answer 2xx, exactly one journal entry per change, Σ journal = balance for every user.`,
      '',
      '| target | changes/s | wall time, ms | p50 ms per request | p99 ms per request | server peak RSS, MB | server CPU, ms |',
      '|---|---|---|---|---|---|---|',
      row(`${per} changes per request (bulk)`, `${service}/bulk`, [['changesPerSec'], ['wallMs'], ['p50Ms', 1], ['p99Ms', 1], ['peakRssMb'], ['cpuMs']]),
      row('one change per request (single PATCH)', `${service}/single`, [['changesPerSec'], ['wallMs'], ['p50Ms', 1], ['p99Ms', 1], ['peakRssMb'], ['cpuMs']]),
      ...pairRows(result, scenario),
    ].join('\n')
  }
  const m = (s.featureBurst ?? s.burstRequests).toLocaleString('en-US')
  const mHalf = ((s.featureBurst ?? s.burstRequests) / 2).toLocaleString('en-US')
  if (scenario.name === 'holds') {
    const burstCols: Array<[string, number?]> = [['wallMs'], ['p50Ms'], ['p99Ms'], ['peakRssMb'], ['cpuMs']]
    return [
      `## ${TITLES.holds}: ${m} simultaneous \`POST /api/holds {amount: 2}\` against ${m} \`PATCH -2\`, each on a user holding ${m}; hold → capture pairs against changes on one hot row`,
      '',
      `Bursts: one fresh socket per request, as the seed burst; the HTTP floor answers holds in memory (available = balance − held). Checks: exactly half 201 (hold) or 200 (change) and half 409 \`INSUFFICIENT_FUNDS\`; ` +
        `after a hold burst ${mHalf} active holds of Σ ${m}, \`held\` = ${m}, the balance and the journal untouched (each hold burst gets a new user); after a change burst the seed burst's checks. ` +
        `Hot row: ${s.connections} keep-alive connections for ${s.featureSeconds ?? s.loadSeconds} s on one user, \`PATCH +1\` against a hold of 1 then its capture on every connection (a pair: two requests, two writes under the user's lock); ` +
        `checks: every answer 2xx, one capture journal entry per captured hold, \`held\` = Σ active holds. Measured on ${who}.`,
      '',
      '| burst | wall time, ms | p50 ms | p99 ms | server peak RSS, MB | server CPU, ms |',
      '|---|---|---|---|---|---|',
      row('HTTP floor, change burst', 'floor/change-burst', burstCols),
      row('HTTP floor, hold burst', 'floor/hold-burst', burstCols),
      row(`${serviceLabel(f.strategy, f.groupCommit)}, change burst`, `${service}/change-burst`, burstCols),
      row(`${serviceLabel(f.strategy, f.groupCommit)}, hold burst`, `${service}/hold-burst`, burstCols),
      '',
      '| hot row | changes/s or pairs/s | req/s | p50 ms | p99 ms | server CPU µs/request |',
      '|---|---|---|---|---|---|',
      row('`PATCH +1`', `${service}/hot-change`, [['reqPerSec'], ['reqPerSec'], ['p50Ms', 1], ['p99Ms', 1], ['cpuUsPerRequest']]),
      row('hold of 1, then its capture', `${service}/hot-hold-capture`, [['pairsPerSec'], ['reqPerSec'], ['p50Ms', 1], ['p99Ms', 1], ['cpuUsPerRequest']]),
      ...pairRows(result, scenario),
    ].join('\n')
  }
  const burstCols: Array<[string, number?]> = [['wallMs'], ['p50Ms'], ['p99Ms'], ['peakRssMb']]
  const hotCols: Array<[string, number?]> = [['reqPerSec'], ['p50Ms', 1], ['p99Ms', 1], ['cpuUsPerRequest']]
  return [
    `## ${TITLES.events}: a burst (${m} simultaneous \`PATCH -2\` on a user holding ${m}) and the hot row (${s.connections} connections, ${s.featureSeconds ?? s.loadSeconds} s, \`PATCH +1\`) with \`EVENTS=on\` against \`EVENTS=off\``,
    '',
    `Two services, each on a database of its own (the switch disables the event triggers per database), booted for each repetition and measured one after the other (which goes first alternates); nothing publishes (no broker): ` +
      `the cost measured is the trigger's, on the request's path. ${who.replace(/^the/, 'Both are the')}. Checks: the seed burst's and the hot row's; with \`EVENTS=on\` exactly one event per journal entry written, with off none.`,
    '',
    '| target | burst wall time, ms | p50 ms | p99 ms | server peak RSS, MB | hot row req/s | p50 ms | p99 ms | server CPU µs/request |',
    '|---|---|---|---|---|---|---|---|---|',
    ...(['on', 'off'] as const).map((mode) => `| \`EVENTS=${mode}\` | ${burstCols.map(([name, digits]) => figure(target(`${service}/burst-events-${mode}`), name, digits ?? 0)).join(' | ')} | ` +
      `${hotCols.map(([name, digits]) => figure(target(`${service}/hot-events-${mode}`), name, digits ?? 0)).join(' | ')} |`),
    ...pairRows(result, scenario),
  ].join('\n')
}

function methodSection (result: BenchResult): string {
  return [
    '## How it was measured',
    '',
    '- **Service**: the production build (`node dist/src/server.js`) as child processes, one per strategy and GROUP_COMMIT value; the on and off services of a strategy share its throwaway database ' +
      `(\`db/throwaway-database.ts\`) and are measured one at a time; \`DB_POOL_MAX=${result.settings.poolSize}\`, \`GROUP_COMMIT_MAX_BATCH=${result.settings.maxBatch}\`, \`LOG_LEVEL=warn\`; migrations and the seeder run at the first boot as in production; ` +
      'the bench adds one hot-row user and the spread users with SQL (balance plus an opening journal entry each).',
    '- **HTTP floor**: `bench/floor-server.mjs`, the same Fastify version, limits and body validation with an in-memory balance instead of PostgreSQL; ' +
      'it answers the burst with the same 200/409 split, so it passes the same checks.',
    '- **Its ceiling** (per strategy): each strategy\'s exported one-change SQL (`ADVISORY_CHANGE_SQL`, `ROW_LOCK_CHANGE_SQL`, `ATOMIC_CHANGE_SQL`, ' +
      'bound to `[userId, amount, MIN_BALANCE, MAX_BALANCE]`) as a named prepared statement, through a `pg.Pool` of the same size, no HTTP, no ORM; for a refused atomic change ' +
      'also the second read the strategy makes. Burst: all calls issued at once; loads: as many async workers as autocannon has connections.',
    '- **Database ceilings** (per-commit and batched): on a throwaway database of their own (migrated by booting the service once), see their section.',
    '- **Bursts**: `bench/burst-client.mjs` in its own process (one fresh socket per request; for the keyed burst request i carries `Idempotency-Key: <prefix>-<i>` with a prefix new to each measurement). Peak RSS: the server\'s VmHWM after a reset ' +
      '(`/proc/<pid>/clear_refs`) and 50 ms VmRSS samples; CPU: utime + stime from `/proc/<pid>/stat` over the measurement.',
    '- **Loads**: autocannon (programmatic API), keep-alive connections; req/s = responses ÷ duration. Requests still in flight when a load stops ' +
      'may commit after it counted, so the journal check allows at most one extra entry per connection.',
    '- **Feature scenarios** (client-burst, bulk, holds, events): one service, the strategy scenarios\' advisory service with group commit on (the events scenario: two more of the same, `EVENTS=on` and `EVENTS=off`, each on its own database, booted for each repetition); ' +
      'each repetition measures them after the strategy scenarios, alternating which of their two sides goes first; their sections say what each compares.',
    '- Repetitions interleave targets (ceilings, then per scenario the floor and each strategy\'s services and ceiling; strategy order rotated and on/off order alternated per repetition), so machine noise ' +
      'hits all of them alike; ratios are computed per repetition (service ÷ reference of the same repetition), then the median is shown.',
  ].join('\n')
}

export function benchSectionForReadme (result: BenchResult): string {
  const { burst, hot, spread: spreadScenario } = result.scenarios
  const keyed = result.scenarios['keyed-burst']
  const lines = [
    '## Benchmark',
    '',
    '```bash',
    'npm run bench                       # the full run, ≈ 23 min on 2 quiet cores: writes bench/results/<timestamp>.json, bench/REPORT.md and this section',
    'npm run bench -- --quick            # 1 repetition, short loads, smaller bursts; like any partial run, written to <tmpdir>/balance-bench unless --out',
    'npm run bench -- --scenarios holds,events --out /tmp/bench   # some scenarios only (names: ' + scenarioNames.join(', ') + ')',
    'npm run bench:report                # regenerate bench/REPORT.md and this section from the latest results',
    '```',
    '',
    'Every strategy runs as the real production build, with group commit on and off, side by side with references measured in the same run: the **HTTP floor** ' +
      '(the same Fastify stack without a database), the **per-commit ceiling** (one conditional UPDATE per commit on one hot row: what one durable commit per change allows), ' +
      'the **batched ceiling** (the group-commit SQL straight through `pg` at several batch sizes) and each strategy\'s one-change SQL through `pg.Pool`. ' +
      'After every measurement the invariants are checked (exact counts, Σ journal = balance, nothing negative); a broken one is reported as FAILED, never as a number. ' +
      'The feature scenarios measure the advisory service with group commit on: the seed burst through `balance-api/client` (its default keys and retries) against the same client on the floor; ' +
      '100-change bulk requests against single PATCHes on the same 1,000 users; hold bursts and hold → capture pairs against changes; `EVENTS=on` against off. ' +
      'Uses `DATABASE_URL` (an admin URL) for throwaway databases, or an embedded PostgreSQL when unset.',
    '',
    `Headline numbers (${result.machine.cores} cores, ${result.machine.cpuModel}, PostgreSQL ${result.machine.postgres}, pool ${result.settings.poolSize}, medians of ${result.settings.repetitions}; ` +
      `1-minute load average ${result.machine.loadAverageDuring === undefined ? result.machine.loadAverageAtStart[0] ?? '?' : `${result.machine.loadAverageDuring.median.toFixed(1)} (median)`} during the run: read the ratios, measured in the same run), ` +
      'full tables and charts in [bench/REPORT.md](../bench/REPORT.md):',
    '',
    '| strategy | group commit | seed burst | ÷ HTTP floor | keyed burst | ÷ HTTP floor | hot row req/s | ÷ per-commit ceiling | spread req/s | burst peak RSS |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ]
  const num = (s: Spread | undefined, unit: string): string => s === undefined ? '—' : `${Math.round(s.median).toLocaleString('en-US')}${unit}`
  const ratio = (s: Spread | undefined): string => s === undefined ? '—' : `${s.median.toFixed(2)}×`
  const show = (t: TargetResult | undefined, metric: string, unit: string): string => t === undefined ? '—' : t.status === 'FAILED' ? 'FAILED' : num(t.summary[metric], unit)
  const perCommit = result.scenarios.ceilings?.targets['per-commit']
  lines.push(`| HTTP floor | — | ${show(burst?.targets.floor, 'wallMs', ' ms')} | 1 | ${show(keyed?.targets.floor, 'wallMs', ' ms')} | 1 | ${show(hot?.targets.floor, 'reqPerSec', '')} | — | ${show(spreadScenario?.targets.floor, 'reqPerSec', '')} | ${show(burst?.targets.floor, 'peakRssMb', ' MB')} |`)
  if (perCommit !== undefined) lines.push(`| per-commit ceiling | — | — | — | — | — | ${show(perCommit, 'changesPerSec', ' changes/s')} | 1 | — | — |`)
  for (const strategy of result.settings.strategies) {
    for (const mode of result.settings.groupCommit) {
      const key = serviceKey(strategy, mode)
      const r = `${strategy}:${mode}` as const
      lines.push(`| ${strategy} | ${mode} | ${show(burst?.targets[key], 'wallMs', ' ms')} | ${ratio(burst?.ratios[r]?.toFloor)} | ${show(keyed?.targets[key], 'wallMs', ' ms')} | ${ratio(keyed?.ratios[r]?.toFloor)} | ` +
        `${show(hot?.targets[key], 'reqPerSec', '')} | ${ratio(hot?.ratios[r]?.toPerCommit)} | ${show(spreadScenario?.targets[key], 'reqPerSec', '')} | ${show(burst?.targets[key], 'peakRssMb', ' MB')} |`)
    }
  }
  const f = featureOf(result)
  const client = result.scenarios['client-burst']
  const featureRows = [
    ...(client === undefined ? [] : [`| seed burst through balance-api/client ÷ the same client against the floor | ${ratio(client.ratios[`${f.strategy}:${f.groupCommit}`]?.toFloor)} |`]),
    ...(['bulk', 'holds', 'events'] as const).flatMap((name) => {
      const scenario = result.scenarios[name]
      return scenario === undefined ? [] : featurePairs(name, f).map((pair) => `| ${TITLES[name].toLowerCase()}: ${pair.name} | ${ratio(scenario.pairs?.[pair.name])} |`)
    }),
  ]
  if (featureRows.length > 0) lines.push('', `Feature scenarios (${f.strategy}, group commit ${f.groupCommit}; medians of same-repetition ratios):`, '', '| comparison | ratio |', '|---|---|', ...featureRows)
  if (result.goals.length > 0) {
    const met = result.goals.filter((g) => g.met).length
    lines.push('', `Targets: ${met} of ${result.goals.length} met in this run (each row in [bench/REPORT.md](../bench/REPORT.md#targets-medians-of-same-repetition-ratios-of-this-run-benchmark-goals-not-timed-tests)); missed:`,
      '', ...(met === result.goals.length ? ['- none'] : result.goals.filter((g) => !g.met).map((g) => `- ${g.name}: ${goalValue(g)} (target ${g.target})`)))
  }
  return lines.join('\n')
}

/** Replaces what follows `<!-- section:bench -->` up to the next section marker. */
export function replaceReadmeSection (readme: string, section: string, body: string): string {
  const marker = `<!-- section:${section} -->`
  const start = readme.indexOf(marker)
  if (start === -1) throw new Error(`docs/benchmarks.md has no ${marker}`)
  const afterMarker = start + marker.length
  const next = readme.indexOf('<!-- section:', afterMarker)
  const end = next === -1 ? readme.length : next
  return readme.slice(0, afterMarker) + '\n\n' + body.trim() + '\n\n' + readme.slice(end)
}

export async function writeReport (result: BenchResult, outDir: string, jsonName: string, readme: boolean): Promise<Omit<WrittenFiles, 'json'>> {
  await mkdir(path.join(outDir, 'charts'), { recursive: true })
  const charts: string[] = []
  // The feature scenarios are tables only: their targets mix wall times, rates and pairs.
  for (const scenario of Object.values(result.scenarios).filter((scenario) => !isFeatureScenario(scenario.name))) {
    const file = path.join(outDir, 'charts', `${scenario.name}.svg`)
    await writeFile(file, chartFor(result, scenario))
    charts.push(file)
  }
  const rss = rssChart(result)
  if (rss !== undefined) {
    const file = path.join(outDir, 'charts', 'rss.svg')
    await writeFile(file, rss)
    charts.push(file)
  }
  const report = path.join(outDir, 'REPORT.md')
  await writeFile(report, renderReport(result, jsonName))
  if (!readme) return { report, charts }
  const readmeFile = path.join(projectRoot, 'docs', 'benchmarks.md')
  await writeFile(readmeFile, replaceReadmeSection(await readFile(readmeFile, 'utf8'), 'bench', benchSectionForReadme(result)))
  return { report, charts, readme: readmeFile }
}

/** results/<timestamp>.json (written to a .tmp first, so a crash never leaves half a result), REPORT.md, charts/. */
export async function writeOutputs (result: BenchResult, outDir: string, readme: boolean): Promise<WrittenFiles> {
  const resultsDir = path.join(outDir, 'results')
  await mkdir(resultsDir, { recursive: true })
  const jsonName = `${result.startedAt.replace(/[:.]/g, '-')}.json`
  const json = path.join(resultsDir, jsonName)
  await writeFile(`${json}.tmp`, JSON.stringify(result, null, 2) + '\n')
  await rename(`${json}.tmp`, json)
  return { json, ...await writeReport(result, outDir, jsonName, readme) }
}

/** `npm run bench:report [results.json]`: regenerates REPORT.md, charts and the docs/benchmarks.md section from a full run's results file (the latest by default). */
async function main (): Promise<void> {
  const benchDir = path.join(projectRoot, 'bench')
  let file = process.argv[2]
  if (file === undefined) {
    const names = (await readdir(path.join(benchDir, 'results'))).filter((name) => name.endsWith('.json')).sort()
    if (names.length === 0) throw new Error('no bench/results/*.json yet: run npm run bench first')
    file = path.join(benchDir, 'results', names.at(-1)!)
  }
  if (!existsSync(file)) throw new Error(`no such file ${file}`)
  const result = JSON.parse(await readFile(file, 'utf8')) as BenchResult
  if (result.settings.full !== true) throw new Error(`${file} is not a full run (every strategy, scenario and GROUP_COMMIT value, not --quick): bench/REPORT.md and docs/benchmarks.md come from full runs only`)
  const written = await writeReport(result, benchDir, path.basename(file), true)
  console.log(`wrote ${written.report}`)
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : error)
    process.exit(1)
  })
}
