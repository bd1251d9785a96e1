import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { parseOptions } from '../../bench/options.js'
import { renderReport, replaceReadmeSection, benchSectionForReadme } from '../../bench/report.js'
import { computePairs, computeRatios, evaluateGoals, spread, summarise, type BenchResult, type TargetResult } from '../../bench/results.js'
import { batchStats, bucketQuantile, parseBatchMetrics } from '../../bench/metrics.js'
import { burstChecks, loadChecks, runBench } from '../../bench/run.js'
import { barChart, niceStep } from '../../bench/svg.js'

// The whole bench, end to end, small: two strategies (advisory and atomic: both batch locks, and atomic's extra read
// for a refusal) with group commit on and off, every scenario, one repetition, a 500-request burst and 1-second loads,
// two batch sizes, a pool of 4 (four services at once stay far from max_connections), 5 bulk requests, written into a
// temporary folder (never over bench/REPORT.md). row-lock runs the same code with its own SQL. The feature scenarios
// (client-burst, bulk, holds, events) run on the advisory service with group commit on. Numbers are not asserted (the
// box is shared); the shape of the result and its invariant checks are.
t.test('npm run bench -- --quick, small, end to end', async (t) => {
  const out = await mkdtemp(path.join(os.tmpdir(), 'balance-bench-'))
  t.teardown(async () => { await rm(out, { recursive: true, force: true }) })
  const lines: string[] = []
  const options = {
    ...parseOptions(['--quick', '--strategies', 'advisory,atomic', '--burst', '500', '--duration', '1', '--users', '200', '--pool', '4', '--batch-sizes', '1,20',
      '--bulk-requests', '5', '--feature-duration', '1', '--out', out]),
    warmupSeconds: 0.3,
    log: (line: string) => { lines.push(line) },
  }
  t.equal(options.readme, false, 'a test run never rewrites README.md')

  const { result, files } = await runBench(options)

  t.same(result.failures, [], 'no invariant broken')
  t.equal(result.ok, true)
  t.equal(result.schema, 'balance-api-bench/2')
  t.match(result.machine, { cores: Number, memoryGiB: Number, node: process.version, postgres: /^\d+/, loadAverageDuring: { median: Number } })
  t.match(result.settings, { burstRequests: 500, loadSeconds: 1, repetitions: 1, poolSize: 4, connections: 100, groupCommit: ['on', 'off'], maxBatch: 512, batchSizes: [1, 20], batchSeconds: 1 })

  const ceilings = result.scenarios.ceilings
  t.equal(ceilings?.metric, 'changesPerSec')
  t.same(Object.keys(ceilings?.targets ?? {}).sort(), ['batch:advisory:1', 'batch:advisory:20', 'batch:row:1', 'batch:row:20', 'per-commit'], 'per-commit ceiling and every lock × batch size')
  for (const [key, target] of Object.entries(ceilings?.targets ?? {})) {
    t.equal(target?.status, 'ok', `ceilings ${key} passed its checks`)
    t.ok((target?.summary.changesPerSec?.median ?? 0) > 0, `ceilings ${key} has changes/s`)
  }
  const batch20 = ceilings?.targets['batch:advisory:20']?.runs[0]
  t.equal(batch20?.detail.applied, (batch20?.detail.calls as number) * 20, 'a batch of 20 applies 20 changes per call')

  const services = ['service:advisory:off', 'service:advisory:on', 'service:atomic:off', 'service:atomic:on']
  const ceilingsOf = ['ceiling:advisory', 'ceiling:atomic']
  for (const name of ['burst', 'keyed-burst', 'hot', 'spread'] as const) {
    const scenario = result.scenarios[name]
    t.ok(scenario, `${name} measured`)
    const metric = name === 'burst' || name === 'keyed-burst' ? 'wallMs' : 'reqPerSec'
    t.equal(scenario?.metric, metric)
    const keys = Object.keys(scenario?.targets ?? {}).sort()
    const withCeilings = name === 'burst' || name === 'hot'
    const expected = [...(withCeilings ? ceilingsOf : []), 'floor', ...services].sort()
    t.same(keys, expected, `${name}: floor, every service on and off${withCeilings ? ' and every ceiling' : ''}`)
    for (const [key, target] of Object.entries(scenario?.targets ?? {})) {
      t.equal(target?.status, 'ok', `${name} ${key} passed its checks`)
      t.equal(target?.runs.length, 1)
      t.ok((target?.summary[metric]?.median ?? 0) > 0, `${name} ${key} has a ${metric}`)
      if (target?.kind !== 'ceiling') t.ok((target?.summary.peakRssMb?.median ?? 0) > 0, `${name} ${key} has a peak RSS`)
    }
    for (const strategy of ['advisory', 'atomic'] as const) {
      const on = scenario?.ratios[`${strategy}:on`]
      t.ok((on?.toFloor?.median ?? 0) > 0, `${name} ${strategy}: ratio to the floor`)
      t.ok((on?.speedupVsOff?.median ?? 0) > 0, `${name} ${strategy}: on against off`)
      if (withCeilings) t.ok((on?.toCeiling?.median ?? 0) > 0, `${name} ${strategy}: ratio to its ceiling`)
      if (name === 'hot' || name === 'spread') t.ok((on?.toPerCommit?.median ?? 0) > 0, `${name} ${strategy}: ratio to the per-commit ceiling`)
    }
  }
  for (const name of ['burst', 'keyed-burst'] as const) {
    for (const mode of ['on', 'off'] as const) {
      t.same(result.scenarios[name]?.targets[`service:advisory:${mode}`]?.runs[0]?.detail.statuses, { 200: 250, 409: 250 }, `${name}, group commit ${mode}: the burst split exactly`)
    }
  }
  const feature = 'service:advisory:on'
  const client = result.scenarios['client-burst']
  t.same(Object.keys(client?.targets ?? {}).sort(), ['floor', feature], 'client-burst: the floor and the advisory service, group commit on')
  for (const key of ['floor', feature] as const) {
    const target = client?.targets[key]
    t.equal(target?.status, 'ok', `client-burst ${key} passed its checks`)
    t.same(target?.runs[0]?.detail.statuses, { 200: 250, 409: 250 }, `client-burst ${key}: the burst split exactly through the client`)
    t.ok((target?.runs[0]?.figures.attempts ?? 0) >= 500, `client-burst ${key}: every call's attempts counted`)
  }
  t.ok((client?.ratios['advisory:on']?.toFloor?.median ?? 0) > 0, 'client-burst: the client against the service ÷ the client against the floor')
  const expected = {
    bulk: [`${feature}/bulk`, `${feature}/single`],
    holds: ['floor/change-burst', 'floor/hold-burst', `${feature}/change-burst`, `${feature}/hold-burst`, `${feature}/hot-change`, `${feature}/hot-hold-capture`],
    events: [`${feature}/burst-events-off`, `${feature}/burst-events-on`, `${feature}/hot-events-off`, `${feature}/hot-events-on`],
  }
  for (const [name, keys] of Object.entries(expected) as Array<[keyof typeof expected, string[]]>) {
    const scenario = result.scenarios[name]
    t.same(Object.keys(scenario?.targets ?? {}).sort(), [...keys].sort(), `${name}: every target`)
    for (const [key, target] of Object.entries(scenario?.targets ?? {})) t.equal(target?.status, 'ok', `${name} ${key} passed its checks`)
    for (const pair of Object.keys(scenario?.pairs ?? {})) t.ok((scenario?.pairs?.[pair]?.median ?? 0) > 0, `${name}: ${pair}`)
  }
  t.same(Object.keys(result.scenarios.bulk?.pairs ?? {}), ['bulk ÷ single PATCHes, changes/s'])
  t.equal(Object.keys(result.scenarios.holds?.pairs ?? {}).length, 4, 'holds: hold and change bursts ÷ their floors, hold ÷ change, hold + capture ÷ change')
  t.equal(Object.keys(result.scenarios.events?.pairs ?? {}).length, 2, 'events: burst and hot row, on ÷ off')
  t.equal(result.scenarios.bulk?.targets[`${feature}/bulk`]?.runs[0]?.detail.journalled, 500, 'bulk: one journal entry per change')
  t.match(result.scenarios.holds?.targets[`${feature}/hold-burst`]?.runs[0]?.detail, { statuses: { 201: 250, 409: 250 }, holds: { active: 250, activeSum: 500, held: 500 } }, 'holds: the hold burst held exactly the balance')
  const eventsOn = result.scenarios.events?.targets[`${feature}/burst-events-on`]?.runs[0]?.detail
  t.equal(eventsOn?.events, 250, 'EVENTS=on: one event per journal entry of the burst')
  t.equal(result.scenarios.events?.targets[`${feature}/burst-events-off`]?.runs[0]?.detail.events, 0, 'EVENTS=off: none')
  t.match(result.settings, { full: false, featureService: { strategy: 'advisory', groupCommit: 'on' }, bulkRequests: 5, bulkChangesPerRequest: 100, bulkUsers: 1000, featureSeconds: 1, featureBurst: 500 })
  t.equal(result.goals.length, 2 * 7 + 2, 'per strategy: two bursts ÷ floor and their RSS ÷ floor, hot ÷ floor and ÷ per-commit, spread on ÷ off; client and bulk once')
  for (const goal of result.goals) t.ok(goal.value !== null, `${goal.name}: measured`)

  t.same(JSON.parse(await readFile(files.json, 'utf8')), result, 'raw JSON written')
  t.same((await readdir(path.join(out, 'results'))).filter((name) => name.endsWith('.tmp')), [], 'no temporary file left')
  const report = await readFile(files.report, 'utf8')
  t.match(report, /All invariant checks passed/)
  for (const heading of ['Database ceilings', 'Seed burst', 'Keyed seed burst', 'Hot row', 'Spread', 'Peak RSS', 'Seed burst through balance-api/client', 'Bulk changes', 'Holds', 'Events', 'Targets']) {
    t.match(report, new RegExp(`## ${heading}`), `REPORT.md has ${heading}`)
  }
  t.match(report, /\| bulk ÷ single PATCHes, changes\/s \| changes\/s \| \*\*[\d.]+×\*\* \|/)
  t.match(report, /\| `EVENTS=off` \| [\d,]+ \|/)
  t.match(report, /\| \*\*advisory\*\* service, group commit \*\*on\*\* \|/)
  t.match(report, /\| batch SQL, advisory lock, \*\*20\*\* per call \|/)
  t.equal(files.charts.length, 6, 'a chart per scenario and one of peak RSS')
  for (const chart of files.charts) t.match(await readFile(chart, 'utf8'), /^<svg [^>]+>[\s\S]*<\/svg>\n$/)
  t.ok(lines.some((line) => /\[\s*1\/\d+\] rep 1\/1 · ceilings/.test(line)), 'progress names step, repetition and scenario')
  t.ok(lines.some((line) => /group commit on/.test(line)), 'progress names the group-commit mode')
  t.ok(lines.some((line) => /left$/.test(line)), 'progress estimates the time left')
})

t.test('flags', async (t) => {
  const full = parseOptions([], {})
  t.match(full, { quick: false, repetitions: 3, burst: 10000, loadSeconds: 8, spreadUsers: 10000, poolSize: 10, build: true, readme: true, databaseUrl: undefined })
  t.same(full.strategies, ['advisory', 'atomic', 'row-lock'])
  t.same(full.scenarios, ['ceilings', 'burst', 'keyed-burst', 'hot', 'spread', 'client-burst', 'bulk', 'holds', 'events'])
  t.match(full, { full: true, bulkRequests: 100, featureSeconds: 4, featureBurst: 5000 })
  t.match(parseOptions(['--quick'], {}), { full: false, readme: false, bulkRequests: 20, featureBurst: 2000 })
  t.not(parseOptions(['--scenarios', 'holds'], {}).outDir, full.outDir, 'a partial run never writes into bench/ unless told to')
  t.equal(parseOptions(['--scenarios', 'holds'], {}).readme, false)
  t.throws(() => parseOptions(['--bulk-requests', '1001']), /1\.\.1000/)
  t.throws(() => parseOptions(['--feature-burst', '3']), /even/)
  t.same(full.groupCommit, ['on', 'off'])
  t.match(full, { maxBatch: 512, batchSizes: [1, 20, 100, 512], batchSeconds: 2 })
  t.match(parseOptions(['--quick'], {}), { batchSeconds: 1, repetitions: 1 })
  const gc = parseOptions(['--group-commit', 'off', '--max-batch', '64', '--batch-sizes', '100,5,5', '--batch-duration', '2'], {})
  t.same(gc.groupCommit, ['off'])
  t.match(gc, { maxBatch: 64, batchSizes: [5, 100], batchSeconds: 2 })
  t.throws(() => parseOptions(['--group-commit', 'maybe']), /unknown maybe/)
  t.throws(() => parseOptions(['--max-batch', '5000']), /1\.\.4096/)
  t.throws(() => parseOptions(['--batch-sizes', '0,20']), /--batch-sizes/)
  t.throws(() => parseOptions(['--batch-sizes', '20,x']), /--batch-sizes/)
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
    runs: values.map((value, index) => ({ repetition: index + 1, ok, failures: ok ? [] : ['statuses {"200":4999}'], figures: { reqPerSec: value, wallMs: value, changesPerSec: value, peakRssMb: 150 }, detail: {} })),
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
    schema: 'balance-api-bench/2',
    startedAt: '2025-01-01T00:00:00.000Z',
    finishedAt: '2025-01-01T00:10:00.000Z',
    command: 'npm run bench',
    ok: false,
    failures: ['burst service:advisory:on rep 1: statuses {"200":4999}'],
    machine: { cpuModel: 'cpu', cores: 2, memoryGiB: 4, os: 'Linux', node: 'v20', postgres: '15', postgresSettings: { synchronous_commit: 'on' }, database: 'embedded', loadAverageAtStart: [1, 1, 1], loadAverageAtEnd: [1, 1, 1], loadAverageDuring: { median: 1.5, min: 1, max: 2 } },
    settings: {
      quick: false, strategies: ['advisory', 'atomic'], scenarios: ['ceilings', 'burst', 'hot', 'bulk'], groupCommit: ['on', 'off'], maxBatch: 512, batchSizes: [1, 20], batchSeconds: 3, repetitions: 3,
      burstRequests: 10000, loadSeconds: 10, warmupSeconds: 2, connections: 100, ceilingWorkers: 100, spreadUsers: 10000, poolSize: 10,
      featureService: { strategy: 'advisory', groupCommit: 'on' }, bulkRequests: 100, bulkChangesPerRequest: 100, bulkUsers: 1000, featureSeconds: 4, featureBurst: 5000,
    },
    scenarios: {
      ceilings: {
        name: 'ceilings',
        metric: 'changesPerSec',
        targets: { 'per-commit': target('per-commit', [1000, 1000, 1000]), 'batch:advisory:20': { ...target('batch', [20000, 21000, 22000]), lock: 'advisory', batchSize: 20 } },
        ratios: {},
      },
      burst: {
        name: 'burst',
        metric: 'wallMs',
        targets: {
          floor: target('floor', [1000, 1000, 1000]),
          'service:advisory:on': target('service', [3000, 3100, 2900], false),
          'service:advisory:off': target('service', [4000, 4000, 4000]),
          'ceiling:advisory': target('ceiling', [2000, 2000, 2000]),
          'service:atomic:on': target('service', [1400, 1500, 1600]),
          'service:atomic:off': target('service', [2800, 3000, 3200]),
        },
        ratios: {},
      },
      hot: {
        name: 'hot',
        metric: 'reqPerSec',
        targets: {
          floor: target('floor', [20000, 20000, 20000]),
          'service:advisory:on': target('service', [1900, 2000, 2100]),
          'service:advisory:off': target('service', [1000, 1000, 1000]),
          'ceiling:advisory': target('ceiling', [2000, 2000, 2000]),
        },
        ratios: {},
      },
      bulk: {
        name: 'bulk',
        metric: 'changesPerSec',
        targets: {
          'service:advisory:on/bulk': { ...target('service', [30000, 36000, 20000]), variant: 'bulk' },
          'service:advisory:on/single': { ...target('service', [3000, 3000, 2500]), variant: 'single' },
        },
        ratios: {},
      },
    },
    goals: [],
  }
  const perCommit = result.scenarios.ceilings?.targets['per-commit']
  for (const scenario of Object.values(result.scenarios)) {
    computeRatios(scenario, result.settings.strategies, perCommit)
    computePairs(scenario, result.settings.featureService!)
  }
  result.goals = evaluateGoals(result)
  t.equal(result.scenarios.burst?.targets['service:advisory:on']?.status, 'FAILED')
  t.same(result.scenarios.burst?.targets['service:advisory:on']?.summary, {}, 'no figures survive a failure')
  t.equal(result.scenarios.burst?.ratios['advisory:on'], undefined, 'no ratio from a failed run')
  t.same(result.scenarios.burst?.ratios['atomic:on']?.toFloor, { median: 1.5, min: 1.4, max: 1.6 }, 'paired per repetition')
  t.same(result.scenarios.burst?.ratios['atomic:on']?.speedupVsOff, { median: 2, min: 2, max: 2 }, 'wall time: off ÷ on')
  t.equal(result.scenarios.burst?.ratios['atomic:off']?.speedupVsOff, undefined, 'only on is compared with off')
  t.same(result.scenarios.hot?.ratios['advisory:on']?.toCeiling, { median: 1, min: 0.95, max: 1.05 })
  t.same(result.scenarios.hot?.ratios['advisory:on']?.toPerCommit, { median: 2, min: 1.9, max: 2.1 }, 'req/s ÷ the per-commit ceiling of the same repetition')
  t.same(result.scenarios.hot?.ratios['advisory:on']?.speedupVsOff, { median: 2, min: 1.9, max: 2.1 }, 'req/s: on ÷ off')
  t.same(result.scenarios.bulk?.pairs, { 'bulk ÷ single PATCHes, changes/s': { median: 10, min: 8, max: 12 } }, 'bulk ÷ single of the same repetition: 10, 12, 8')
  t.same(result.scenarios.burst?.ratios['atomic:on']?.rssToFloor, { median: 1, min: 1, max: 1 }, 'peak RSS ÷ the floor\'s of the same repetition')
  t.same(result.goals.map((goal) => [goal.target, goal.met, goal.value]), [
    ['≤ 1.2', false, null], ['≤ 1.4', false, null], ['≥ 0.6', false, 0.1], ['≥ 2.0', true, 2], // advisory: its burst FAILED
    ['≤ 1.2', false, 1.5], ['≤ 1.4', true, 1], ['≥ 0.6', false, null], ['≥ 2.0', false, null], // atomic: no hot row measured
    ['≥ 10', true, 10], // bulk, once
  ])

  const report = renderReport(result, 'x.json')
  t.match(report, /FAILED: some measurements broke an invariant/)
  t.match(report, /\| \*\*advisory\*\* service, group commit \*\*on\*\* \| \*\*FAILED\*\* \|/)
  t.match(report, /statuses \{"200":4999\}/)
  t.match(report, /❌ missed/)
  t.match(report, /: bulk \(100 requests × 100 changes over 1,000 users\) ÷ single PATCHes, changes\/s \| ≥ 10 \| 10\.000 \| ✅ met \|/, 'a goal\'s ratio with three decimals')
  t.match(report, /1\.50×\*\* \(1\.40–1\.60\)/)
  t.match(report, /\| batch SQL, advisory lock, \*\*20\*\* per call \| 21,000 \(20,000–22,000\) \| \*\*21\.00×\*\* \(20\.00–22\.00\) \|/)
  t.match(report, /during \(after each measurement\) 1\.50 \(1\.00–2\.00\)/, 'the machine load during the run')
  t.match(report, /## Bulk changes: 100 `POST \/api\/balance\/batch` of 100 changes each against 10,000 single `PATCH \/api\/balance`/)
  t.match(report, /\| bulk ÷ single PATCHes, changes\/s \| changes\/s \| \*\*10\.00×\*\* \(8\.00–12\.00\) \|/)
  t.notMatch(report, /## Spread/)
  t.notMatch(report, /## Holds/)
  t.notMatch(report, /## Keyed seed burst/)

  const readme = replaceReadmeSection('a\n<!-- section:bench -->\nSTALE\n<!-- section:next -->\nb\n', 'bench', benchSectionForReadme(result))
  t.match(readme, /<!-- section:bench -->\n\n## Benchmark[\s\S]*\| per-commit ceiling \|[\s\S]*\| advisory \| on \| FAILED \|[\s\S]*\n\n<!-- section:next -->\nb\n$/)
  t.match(readme, /\| advisory \| on \| FAILED \| — \| — \| — \| 2,000 \| 2\.00× \|/)
  t.notMatch(readme, /STALE/)
  t.match(readme, /\| bulk changes: bulk ÷ single PATCHes, changes\/s \| 10\.00× \|/)
  t.match(readme, /Targets: 3 of 9 met in this run/)
  t.throws(() => replaceReadmeSection('no markers', 'bench', 'x'), /no <!-- section:bench -->/)
})

t.test('batch sizes from two /metrics scrapes', async (t) => {
  const scrape = (buckets: number[], sum: number, total: number): string => [
    '# HELP balance_batch_size Changes per batch',
    '# TYPE balance_batch_size histogram',
    ...[1, 2, 4, 8, 16, 32, 64, 128, 256, 512].map((le, i) => `balance_batch_size_bucket{le="${le}",strategy="advisory"} ${buckets[i] ?? buckets.at(-1)}`),
    `balance_batch_size_bucket{le="+Inf",strategy="advisory"} ${buckets.at(-1)}`,
    `balance_batch_size_sum{strategy="advisory"} ${sum}`,
    `balance_batch_size_count{strategy="advisory"} ${buckets.at(-1)}`,
    'balance_batch_size_bucket{le="1",strategy="atomic"} 999',
    `balance_batches_total{strategy="advisory"} ${total}`,
  ].join('\n')
  const before = parseBatchMetrics(scrape([10], 10, 10), 'advisory')
  t.same(before.histogram?.count, 10)
  t.equal(before.histogram?.buckets.at(-1)?.le, Infinity)
  // After: 10 more batches of 1, 80 of 3–4, 10 of 100–128.
  const after = parseBatchMetrics(scrape([20, 20, 100, 100, 100, 100, 100, 110], 10 + 10 + 80 * 3.5 + 10 * 120, 110), 'advisory')
  const stats = batchStats(before, after, 512)
  t.same(stats, { batches: 100, changes: 1490, mean: 14.9, p50: 3.5, p90: 4, max: 128, batchesTotal: 100 })
  t.equal(batchStats({}, parseBatchMetrics('', 'advisory'), 512), undefined, 'no histogram: no figures')
  t.same(parseBatchMetrics(scrape([5], 5, 5), 'row-lock'), {}, 'another strategy\'s series are not read')
  t.equal(bucketQuantile([{ le: 1, count: 0 }, { le: Infinity, count: 4 }], 0.5), 1, 'past the last finite bucket: its bound')
  t.ok(Number.isNaN(bucketQuantile([{ le: 1, count: 0 }], 0.5)))
  t.equal(bucketQuantile([{ le: 1, count: 7 }, { le: 2, count: 7 }, { le: Infinity, count: 7 }], 0.5), 1, 'only lone changes: 1')
  const capped = batchStats({}, parseBatchMetrics(scrape([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3], 1500, 3), 'advisory'), 512)
  t.equal(capped?.max, 512, 'the +Inf bucket is capped at the largest batch allowed')
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
  t.match(near, /^<svg [^>]*width="720"/, 'a few bars: the usual width')
  const many = barChart({ title: 'RSS', unit: 'MB', bars: Array.from({ length: 12 }, (_, i) => ({ label: `keyed row-lock ${i}`, value: 150, color: '#123456' })), legend: [{ label: 'on', color: '#123456', kind: 'box' }] })
  t.match(many, /^<svg [^>]*width="1366"/, 'twelve bars: wider, so their labels do not overlap')
  t.match(many, /fill="#123456"/, 'a bar may name its colour')
  t.notMatch(many, /its own database ceiling/, 'a chart may replace the legend')
})
