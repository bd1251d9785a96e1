import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { parseOptions } from '../bench/options.js'
import { renderReport, replaceReadmeSection, benchSectionForReadme } from '../bench/report.js'
import { computeRatios, evaluateGoals, spread, summarise, type BenchResult, type TargetResult } from '../bench/results.js'
import { burstChecks, loadChecks, runBench } from '../bench/run.js'
import { barChart, niceStep } from '../bench/svg.js'

// The whole bench, end to end, small: every strategy, every scenario, one repetition, a 500-request burst and 1-second
// loads, written into a temporary folder (never over bench/REPORT.md). Numbers are not asserted (the box is shared);
// the shape of the result and its invariant checks are.
t.test('npm run bench -- --quick, small, end to end', async (t) => {
  const out = await mkdtemp(path.join(os.tmpdir(), 'balance-bench-'))
  t.teardown(async () => { await rm(out, { recursive: true, force: true }) })
  const lines: string[] = []
  const options = {
    ...parseOptions(['--quick', '--burst', '500', '--duration', '1', '--users', '200', '--out', out]),
    warmupSeconds: 0.3,
    log: (line: string) => { lines.push(line) },
  }
  t.equal(options.readme, false, 'a test run never rewrites README.md')

  const { result, files } = await runBench(options)

  t.same(result.failures, [], 'no invariant broken')
  t.equal(result.ok, true)
  t.equal(result.schema, 'balance-api-bench/1')
  t.match(result.machine, { cores: Number, memoryGiB: Number, node: process.version, postgres: /^\d+/ })
  t.match(result.settings, { burstRequests: 500, loadSeconds: 1, repetitions: 1, poolSize: 10, connections: 100 })
  for (const name of ['burst', 'hot', 'spread'] as const) {
    const scenario = result.scenarios[name]
    t.ok(scenario, `${name} measured`)
    const metric = name === 'burst' ? 'wallMs' : 'reqPerSec'
    t.equal(scenario?.metric, metric)
    const keys = Object.keys(scenario?.targets ?? {}).sort()
    t.same(keys, ['ceiling:advisory', 'ceiling:atomic', 'ceiling:row-lock', 'floor', 'service:advisory', 'service:atomic', 'service:row-lock'], `${name}: floor, every service and every ceiling`)
    for (const [key, target] of Object.entries(scenario?.targets ?? {})) {
      t.equal(target.status, 'ok', `${name} ${key} passed its checks`)
      t.equal(target.runs.length, 1)
      t.ok((target.summary[metric]?.median ?? 0) > 0, `${name} ${key} has a ${metric}`)
      if (target.kind !== 'ceiling') t.ok((target.summary.peakRssMb?.median ?? 0) > 0, `${name} ${key} has a peak RSS`)
    }
    for (const strategy of ['advisory', 'atomic', 'row-lock'] as const) {
      t.ok((scenario?.ratios[strategy]?.toCeiling?.median ?? 0) > 0, `${name} ${strategy}: ratio to its ceiling`)
      t.ok((scenario?.ratios[strategy]?.toFloor?.median ?? 0) > 0, `${name} ${strategy}: ratio to the floor`)
    }
  }
  const burstRun = result.scenarios.burst?.targets['service:advisory']?.runs[0]
  t.same(burstRun?.detail.statuses, { 200: 250, 409: 250 }, 'the burst split exactly')
  t.same(result.goals.map((goal) => goal.name).length, 5, 'two ratio goals and one RSS goal per strategy')

  t.same(JSON.parse(await readFile(files.json, 'utf8')), result, 'raw JSON written')
  t.same((await readdir(path.join(out, 'results'))).filter((name) => name.endsWith('.tmp')), [], 'no temporary file left')
  const report = await readFile(files.report, 'utf8')
  t.match(report, /All invariant checks passed/)
  t.match(report, /## Burst/)
  t.match(report, /## Hot row/)
  t.match(report, /## Spread/)
  t.match(report, /\| \*\*advisory\*\* service \|/)
  t.equal(files.charts.length, 3)
  for (const chart of files.charts) t.match(await readFile(chart, 'utf8'), /^<svg [^>]+>[\s\S]*<\/svg>\n$/)
  t.ok(lines.some((line) => /\[\s*1\/21\] rep 1\/1 · burst/.test(line)), 'progress names step, repetition and scenario')
  t.ok(lines.some((line) => /left$/.test(line)), 'progress estimates the time left')
})

t.test('flags', async (t) => {
  const full = parseOptions([], {})
  t.match(full, { quick: false, repetitions: 3, burst: 10000, loadSeconds: 10, spreadUsers: 10000, poolSize: 10, build: true, readme: true, databaseUrl: undefined })
  t.same(full.strategies, ['advisory', 'atomic', 'row-lock'])
  t.same(full.scenarios, ['burst', 'hot', 'spread'])
  const picked = parseOptions(['--strategies', 'atomic,advisory', '--scenarios', 'hot', '--burst', '100', '--pool', '8', '--no-build'], { DATABASE_URL: 'postgres://x@h/db' })
  t.same(picked.strategies, ['advisory', 'atomic'], 'in canonical order')
  t.same(picked.scenarios, ['hot'])
  t.match(picked, { burst: 100, poolSize: 8, build: false, databaseUrl: 'postgres://x@h/db' })
  t.throws(() => parseOptions(['--strategies', 'optimistic']), /unknown optimistic/)
  t.throws(() => parseOptions(['--strategies', ',']), /at least one/)
  t.throws(() => parseOptions(['--burst', '7']), /even/)
  t.throws(() => parseOptions(['--burst=0']), /positive integer/)
  t.throws(() => parseOptions(['--pool', '1']), /2\.\.100/)
  t.throws(() => parseOptions(['--help']), /Usage/)
  t.throws(() => parseOptions(['--bogus']))
})

function target (kind: TargetResult['kind'], values: number[], ok = true): TargetResult {
  const result: TargetResult = {
    kind,
    runs: values.map((value, index) => ({ repetition: index + 1, ok, failures: ok ? [] : ['statuses {"200":4999}'], figures: { reqPerSec: value, wallMs: value, peakRssMb: 150 }, detail: {} })),
    status: 'ok',
    summary: {},
  }
  summarise(result)
  return result
}

t.test('a failed measurement is reported as FAILED, never as a number', async (t) => {
  t.same(spread([3, 1, 2]), { median: 2, min: 1, max: 3 })
  t.same(spread([4, 1, 2, 3]), { median: 2.5, min: 1, max: 4 })
  const result: BenchResult = {
    schema: 'balance-api-bench/1',
    startedAt: '2025-01-01T00:00:00.000Z',
    finishedAt: '2025-01-01T00:10:00.000Z',
    command: 'npm run bench',
    ok: false,
    failures: ['burst service:advisory rep 1: statuses {"200":4999}'],
    machine: { cpuModel: 'cpu', cores: 2, memoryGiB: 4, os: 'Linux', node: 'v20', postgres: '15', postgresSettings: { synchronous_commit: 'on' }, database: 'embedded', loadAverageAtStart: [1, 1, 1], loadAverageAtEnd: [1, 1, 1] },
    settings: { quick: false, strategies: ['advisory', 'atomic'], scenarios: ['burst', 'hot'], repetitions: 3, burstRequests: 10000, loadSeconds: 10, warmupSeconds: 2, connections: 100, ceilingWorkers: 100, spreadUsers: 10000, poolSize: 10 },
    scenarios: {
      burst: {
        name: 'burst',
        metric: 'wallMs',
        targets: { floor: target('floor', [1000, 1000, 1000]), 'service:advisory': target('service', [3000, 3100, 2900], false), 'ceiling:advisory': target('ceiling', [2000, 2000, 2000]), 'service:atomic': target('service', [1800, 1900, 2000]) },
        ratios: {},
      },
      hot: {
        name: 'hot',
        metric: 'reqPerSec',
        targets: { floor: target('floor', [20000, 20000, 20000]), 'service:advisory': target('service', [1900, 2000, 2100]), 'ceiling:advisory': target('ceiling', [2000, 2000, 2000]) },
        ratios: {},
      },
    },
    goals: [],
  }
  for (const scenario of Object.values(result.scenarios)) computeRatios(scenario, result.settings.strategies)
  result.goals = evaluateGoals(result)
  t.equal(result.scenarios.burst?.targets['service:advisory']?.status, 'FAILED')
  t.same(result.scenarios.burst?.targets['service:advisory']?.summary, {}, 'no figures survive a failure')
  t.equal(result.scenarios.burst?.ratios.advisory, undefined, 'no ratio from a failed run')
  t.same(result.scenarios.burst?.ratios.atomic?.toFloor, { median: 1.9, min: 1.8, max: 2 }, 'paired per repetition')
  t.same(result.scenarios.hot?.ratios.advisory?.toCeiling, { median: 1, min: 0.95, max: 1.05 })
  t.same(result.goals.map((goal) => [goal.met, goal.value]), [[true, 1], [false, null], [false, null], [true, 150]])

  const report = renderReport(result, 'x.json')
  t.match(report, /FAILED: some measurements broke an invariant/)
  t.match(report, /\| \*\*advisory\*\* service \| \*\*FAILED\*\* \|/)
  t.match(report, /statuses \{"200":4999\}/)
  t.match(report, /❌ missed/)
  t.match(report, /1\.90×\*\* \(1\.80–2\.00\)/)
  t.notMatch(report, /## Spread/)

  const readme = replaceReadmeSection('a\n<!-- section:bench -->\nold\n<!-- section:next -->\nb\n', 'bench', benchSectionForReadme(result))
  t.match(readme, /<!-- section:bench -->\n\n## Benchmark[\s\S]*\| advisory \| FAILED \|[\s\S]*\n\n<!-- section:next -->\nb\n$/)
  t.notMatch(readme, /old/)
  t.throws(() => replaceReadmeSection('no markers', 'bench', 'x'), /no <!-- section:bench -->/)
})

t.test('checks name every way a measurement can break', async (t) => {
  const good = { wallMs: 1, statuses: { 200: 5, 409: 5 }, codes: { INSUFFICIENT_FUNDS: 5 }, errors: {}, latencyMs: { p50: 1, p99: 1, max: 1 } }
  t.same(burstChecks(good, 10), [])
  t.match(burstChecks({ ...good, statuses: { 200: 5, 409: 4, 503: 1 }, codes: { INSUFFICIENT_FUNDS: 4, DB_UNAVAILABLE: 1 }, errors: { ECONNRESET: 2 } }, 10), [
    /connection errors \{"ECONNRESET":2\}/, /statuses .*"503":1.*expected 5 × 200 and 5 × 409/, /codes .*DB_UNAVAILABLE/,
  ])
  const load = { reqPerSec: 1, p50Ms: 1, p99Ms: 1, responses: 10, ok2xx: 10, non2xx: 0, errors: 0, timeouts: 0, durationS: 1 }
  t.same(loadChecks(load), [])
  t.same(loadChecks({ ...load, ok2xx: 0, non2xx: 10, errors: 1, timeouts: 1 }), ['1 connection errors', '1 timeouts', '10 non-2xx responses', 'no 2xx response at all'])
})

t.test('svg charts', async (t) => {
  t.equal(niceStep(0), 1)
  t.equal(niceStep(9000), 2000)
  t.equal(niceStep(3000), 1000)
  t.equal(niceStep(40), 10)
  const svg = barChart({
    title: 'Hot row <&>',
    unit: 'req/s',
    bars: [
      { label: 'advisory', value: 2000, min: 1900, max: 2100, marker: { label: 'ceiling', value: 2100 } },
      { label: 'atomic', value: 0, failed: true },
    ],
    lines: [{ label: 'HTTP floor', value: 25000 }],
  })
  t.match(svg, /Hot row &lt;&amp;&gt;/, 'text is escaped')
  t.match(svg, /FAILED/)
  t.match(svg, /HTTP floor 25,000 ↑ off scale/, 'a far reference line is drawn at the top')
  t.match(svg, /ceiling 2,100/)
  const near = barChart({ title: 'Burst', unit: 'ms', bars: [{ label: 'advisory', value: 3.5 }], lines: [{ label: 'HTTP floor', value: 1.5 }] })
  t.match(near, /HTTP floor 1\.50</)
  t.notMatch(near, /off scale/)
})
