import { existsSync } from 'node:fs'
import { mkdir, readFile, readdir, rename, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import type { StrategyName } from '../src/config.js'
import type { ScenarioName } from './options.js'
import { projectRoot } from './paths.js'
import { targetKey, type BenchResult, type ScenarioResult, type Spread, type TargetResult } from './results.js'
import { barChart, formatNumber, type Bar } from './svg.js'

export interface WrittenFiles {
  json: string
  report: string
  charts: string[]
  readme?: string
}

const TITLES: Record<ScenarioName, string> = {
  burst: 'Burst',
  hot: 'Hot row',
  spread: 'Spread',
}

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

function strategiesOf (result: BenchResult): StrategyName[] {
  return result.settings.strategies
}

function burstSection (result: BenchResult, scenario: ScenarioResult): string {
  const n = result.settings.burstRequests.toLocaleString('en-US')
  const lines = [
    `## ${TITLES.burst}: ${n} simultaneous \`PATCH -2\` on one user holding ${n}, one fresh socket each`,
    '',
    `Checks: exactly ${(result.settings.burstRequests / 2).toLocaleString('en-US')} × 200 and as many × 409 \`INSUFFICIENT_FUNDS\`, no connection error, final balance 0, one journal entry per success, Σ journal = balance for every user, nothing negative.`,
    '',
    '![burst wall time per strategy](charts/burst.svg)',
    '',
    '| target | wall time, ms | ÷ HTTP floor | ÷ its ceiling | p50 ms | p99 ms | max ms | server peak RSS, MB | server CPU, ms |',
    '|---|---|---|---|---|---|---|---|---|',
  ]
  const floor = scenario.targets.floor
  lines.push(`| HTTP floor (Fastify, no database) | ${figure(floor, 'wallMs')} | 1 | — | ${figure(floor, 'p50Ms')} | ${figure(floor, 'p99Ms')} | ${figure(floor, 'maxMs')} | ${figure(floor, 'peakRssMb')} | ${figure(floor, 'cpuMs')} |`)
  for (const strategy of strategiesOf(result)) {
    const service = scenario.targets[targetKey('service', strategy)]
    const ceiling = scenario.targets[targetKey('ceiling', strategy)]
    const ratios = scenario.ratios[strategy]
    lines.push(`| **${strategy}** service | ${figure(service, 'wallMs')} | ${ratioCell(ratios?.toFloor)} | ${ratioCell(ratios?.toCeiling)} | ${figure(service, 'p50Ms')} | ${figure(service, 'p99Ms')} | ${figure(service, 'maxMs')} | ${figure(service, 'peakRssMb')} | ${figure(service, 'cpuMs')} |`)
    lines.push(`| ${strategy} ceiling (SQL via pg.Pool) | ${figure(ceiling, 'wallMs')} | — | 1 | ${figure(ceiling, 'p50Ms')} | ${figure(ceiling, 'p99Ms')} | ${figure(ceiling, 'maxMs')} | — | — |`)
  }
  lines.push('', 'Wall time: lower is better; a ratio below 2 to the floor means the database work hides mostly behind the HTTP work.')
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
    `Checks: no error, no timeout, no non-2xx; one journal entry per 2xx (the ceiling: per applied call, exactly); Σ journal = balance for every user; nothing negative. The ceiling is the strategy's exact SQL driven by ${s.ceilingWorkers} async workers through a \`pg.Pool\` of ${s.poolSize}, no HTTP, no ORM.`,
    '',
    `![${scenario.name} req/s per strategy](charts/${scenario.name}.svg)`,
    '',
    '| target | req/s | ÷ its ceiling | ÷ HTTP floor | p50 ms | p99 ms | server CPU µs/request | server peak RSS, MB |',
    '|---|---|---|---|---|---|---|---|',
  ]
  const floor = scenario.targets.floor
  lines.push(`| HTTP floor (Fastify, no database) | ${figure(floor, 'reqPerSec')} | — | 1 | ${figure(floor, 'p50Ms', 1)} | ${figure(floor, 'p99Ms', 1)} | ${figure(floor, 'cpuUsPerRequest')} | ${figure(floor, 'peakRssMb')} |`)
  for (const strategy of strategiesOf(result)) {
    const service = scenario.targets[targetKey('service', strategy)]
    const ceiling = scenario.targets[targetKey('ceiling', strategy)]
    const ratios = scenario.ratios[strategy]
    lines.push(`| **${strategy}** service | ${figure(service, 'reqPerSec')} | ${ratioCell(ratios?.toCeiling)} | ${ratioCell(ratios?.toFloor)} | ${figure(service, 'p50Ms', 1)} | ${figure(service, 'p99Ms', 1)} | ${figure(service, 'cpuUsPerRequest')} | ${figure(service, 'peakRssMb')} |`)
    lines.push(`| ${strategy} ceiling (SQL via pg.Pool) | ${figure(ceiling, 'reqPerSec')} | 1 | — | ${figure(ceiling, 'p50Ms', 1)} | ${figure(ceiling, 'p99Ms', 1)} | — | — |`)
  }
  return lines.join('\n')
}

function chartFor (result: BenchResult, scenario: ScenarioResult): string {
  const metric = scenario.metric
  const bars: Bar[] = strategiesOf(result).map((strategy) => {
    const service = scenario.targets[targetKey('service', strategy)]
    const ceiling = scenario.targets[targetKey('ceiling', strategy)]
    const value = service?.summary[metric]
    const reference = ceiling?.status === 'ok' ? ceiling.summary[metric] : undefined
    return {
      label: strategy,
      value: value?.median ?? 0,
      ...(value === undefined ? {} : { min: value.min, max: value.max }),
      ...(reference === undefined ? {} : { marker: { label: 'ceiling', value: reference.median } }),
      failed: service?.status !== 'ok',
    }
  })
  const floor = scenario.targets.floor
  const floorValue = floor?.status === 'ok' ? floor.summary[metric]?.median : undefined
  const lines = floorValue === undefined ? [] : [{ label: 'HTTP floor', value: floorValue }]
  const title = metric === 'wallMs'
    ? `Burst: ${result.settings.burstRequests.toLocaleString('en-US')} simultaneous PATCH, wall time (lower is better)`
    : `${TITLES[scenario.name]}: service req/s, ${result.settings.connections} connections (higher is better)`
  return barChart({ title, unit: metric === 'wallMs' ? 'wall time, ms' : 'requests per second', bars, lines })
}

function goalsSection (result: BenchResult): string {
  if (result.goals.length === 0) return ''
  const lines = ['## Goals (this machine class; benchmark goals, not timed tests)', '', '| goal | target | this run | |', '|---|---|---|---|']
  for (const goal of result.goals) {
    lines.push(`| ${goal.name} | ${goal.target} | ${goal.value === null ? 'FAILED' : formatNumber(goal.value)} | ${goal.met ? '✅ met' : '❌ missed'} |`)
  }
  return lines.join('\n')
}

function failuresSection (result: BenchResult): string {
  if (result.ok) return ''
  return ['## FAILED checks', '', 'These measurements broke an invariant; they are reported as FAILED, never as numbers.', '',
    ...result.failures.map((failure) => `- ${failure}`)].join('\n')
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
      `| load average (1/5/15 min) | at start ${m.loadAverageAtStart.join(' / ')}, at end ${m.loadAverageAtEnd.join(' / ')} — the box is shared: compare same-run ratios |`,
      `| settings | pool (DB_POOL_MAX and the ceiling's pg.Pool) ${s.poolSize}; ${s.repetitions} repetition(s), median (min–max); burst ${s.burstRequests}; loads ${s.loadSeconds} s × ${s.connections} connections after ${s.warmupSeconds} s warm-up; ${s.spreadUsers} spread users${s.quick ? '; **--quick**' : ''} |`,
    ].join('\n'),
    '',
    goalsSection(result),
    failuresSection(result),
    ...(['burst', 'hot', 'spread'] as const).flatMap((name) => {
      const scenario = result.scenarios[name]
      if (scenario === undefined) return []
      return [name === 'burst' ? burstSection(result, scenario) : loadSection(result, scenario)]
    }),
    methodSection(result),
  ]
  return sections.filter((section) => section !== '').join('\n\n').replace(/\n{3,}/g, '\n\n') + '\n'
}

function methodSection (result: BenchResult): string {
  return [
    '## How it was measured',
    '',
    '- **Service**: the production build (`node dist/src/server.js`) as a child process per strategy, each on its own throwaway database ' +
      `(\`db/throwaway-database.ts\`), \`DB_POOL_MAX=${result.settings.poolSize}\`, \`LOG_LEVEL=warn\`; migrations and the seeder run at its boot as in production; ` +
      'the bench adds one hot-row user and the spread users with SQL (balance plus an opening journal entry each).',
    '- **HTTP floor**: `bench/floor-server.mjs`, the same Fastify version, limits and body validation with an in-memory balance instead of PostgreSQL; ' +
      'it answers the burst with the same 200/409 split, so it passes the same checks.',
    '- **Database ceiling**: each strategy\'s exported SQL constant (`ADVISORY_CHANGE_SQL`, `ROW_LOCK_CHANGE_SQL`, `ATOMIC_CHANGE_SQL`, ' +
      'bound to `[userId, amount, MIN_BALANCE, MAX_BALANCE]`) as a named prepared statement, like the service sends it, through a `pg.Pool` of the same size, no HTTP, no ORM; for a refused atomic change ' +
      'also the second read the strategy makes. Burst: all calls issued at once; loads: as many async workers as autocannon has connections.',
    '- **Burst**: `test/support/burst-client.mjs` in its own process (one fresh socket per request). Peak RSS: the server\'s VmHWM after a reset ' +
      '(`/proc/<pid>/clear_refs`) and 50 ms VmRSS samples; CPU: utime + stime from `/proc/<pid>/stat` over the measurement.',
    '- **Loads**: autocannon (programmatic API), keep-alive connections; req/s = responses ÷ duration. Requests still in flight when a load stops ' +
      'may commit after it counted, so the journal check allows at most one extra entry per connection.',
    '- Repetitions interleave targets (floor, then each strategy\'s service and ceiling, strategy order rotated per repetition), so machine noise ' +
      'hits all of them alike; ratios are computed per repetition (service ÷ reference of the same repetition), then the median is shown.',
  ].join('\n')
}

export function benchSectionForReadme (result: BenchResult): string {
  const hot = result.scenarios.hot
  const burst = result.scenarios.burst
  const lines = [
    '## Benchmark',
    '',
    '```bash',
    'npm run bench                       # full run: 10–15 minutes; writes bench/results/<timestamp>.json and bench/REPORT.md',
    'npm run bench -- --quick            # 1 repetition, short loads, smaller burst',
    'npm run bench -- --strategies advisory,atomic --scenarios burst,hot --burst 10000',
    'npm run bench:report                # regenerate bench/REPORT.md from the latest results',
    '```',
    '',
    'Every strategy runs as the real production build, side by side with two references measured in the same run: the **HTTP floor** ' +
      '(the same Fastify stack without a database) and each strategy\'s **database ceiling** (its exact SQL straight through `pg.Pool`). ' +
      'After every measurement the invariants are checked (exact counts, Σ journal = balance, nothing negative); a broken one is reported as FAILED, never as a number. ' +
      'Uses `DATABASE_URL` (an admin URL) for throwaway databases, or an embedded PostgreSQL when unset.',
    '',
    `Headline numbers (${result.machine.cores} cores, ${result.machine.cpuModel}, PostgreSQL ${result.machine.postgres}, pool ${result.settings.poolSize}, medians of ${result.settings.repetitions}; ` +
      `load average ${result.machine.loadAverageAtStart[0] ?? '?'} at the start: the box was shared, so read the ratios, not the absolute figures), full tables and charts in [bench/REPORT.md](bench/REPORT.md):`,
    '',
    '| strategy | burst wall time | ÷ HTTP floor | hot row req/s | ÷ its DB ceiling |',
    '|---|---|---|---|---|',
  ]
  const num = (s: Spread | undefined, unit: string): string => s === undefined ? '—' : `${Math.round(s.median).toLocaleString('en-US')}${unit}`
  const ratio = (s: Spread | undefined): string => s === undefined ? '—' : `${s.median.toFixed(2)}×`
  const show = (t: TargetResult | undefined, metric: string, unit: string): string => t === undefined ? '—' : t.status === 'FAILED' ? 'FAILED' : num(t.summary[metric], unit)
  lines.push(`| HTTP floor | ${show(burst?.targets.floor, 'wallMs', ' ms')} | 1 | ${show(hot?.targets.floor, 'reqPerSec', '')} | — |`)
  for (const strategy of result.settings.strategies) {
    lines.push(`| ${strategy} | ${show(burst?.targets[targetKey('service', strategy)], 'wallMs', ' ms')} | ${ratio(burst?.ratios[strategy]?.toFloor)} | ` +
      `${show(hot?.targets[targetKey('service', strategy)], 'reqPerSec', '')} | ${ratio(hot?.ratios[strategy]?.toCeiling)} |`)
  }
  return lines.join('\n')
}

/** Replaces what follows `<!-- section:bench -->` up to the next section marker. */
export function replaceReadmeSection (readme: string, section: string, body: string): string {
  const marker = `<!-- section:${section} -->`
  const start = readme.indexOf(marker)
  if (start === -1) throw new Error(`README.md has no ${marker}`)
  const afterMarker = start + marker.length
  const next = readme.indexOf('<!-- section:', afterMarker)
  const end = next === -1 ? readme.length : next
  return readme.slice(0, afterMarker) + '\n\n' + body.trim() + '\n\n' + readme.slice(end)
}

export async function writeReport (result: BenchResult, outDir: string, jsonName: string, readme: boolean): Promise<Omit<WrittenFiles, 'json'>> {
  await mkdir(path.join(outDir, 'charts'), { recursive: true })
  const charts: string[] = []
  for (const scenario of Object.values(result.scenarios)) {
    const file = path.join(outDir, 'charts', `${scenario.name}.svg`)
    await writeFile(file, chartFor(result, scenario))
    charts.push(file)
  }
  const report = path.join(outDir, 'REPORT.md')
  await writeFile(report, renderReport(result, jsonName))
  if (!readme) return { report, charts }
  const readmeFile = path.join(projectRoot, 'README.md')
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

/** `npm run bench:report [results.json]`: regenerates REPORT.md, charts and the README section from a results file (the latest by default). */
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
  const written = await writeReport(result, benchDir, path.basename(file), true)
  console.log(`wrote ${written.report}`)
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : error)
    process.exit(1)
  })
}
