import t from 'tap'
import { parseArgs, runSoak } from '../../reliability/soak.js'

/**
 * The bank soak, short: two instances of the service on one throwaway database, writers with
 * Idempotency-Keys, readers, pg_terminate_backend every 2 s and one instance killed (SIGKILL) and restarted; no
 * invariant may break. SOAK_SECONDS sets the length (30 by default). The instances run src/server.ts through the
 * same TypeScript loader as this test, so nothing needs building first.
 */
const seconds = Number(process.env.SOAK_SECONDS ?? 30)
const loader = process.execArgv.filter((arg) => arg.includes('@tapjs/typescript') || arg === '--enable-source-maps')
const loaderEnv = Object.fromEntries(Object.entries(process.env).filter((entry): entry is [string, string] =>
  /^(TS_NODE_|TAP_CWD$|TAP_TSCONFIG$)/.test(entry[0]) && entry[1] !== undefined))

t.test('options: --minutes/--seconds and the rest are checked', async (t) => {
  t.match(parseArgs(['--minutes', '2']), { durationMs: 120_000, instances: 2, strategy: 'advisory', terminateEveryMs: 3000, killInstanceEveryMs: 0, report: false })
  t.match(parseArgs(['--seconds', '5', '--no-faults', '--strategy', 'atomic', '--report']), { durationMs: 5000, terminateEveryMs: 0, killInstanceEveryMs: 0, strategy: 'atomic', report: true })
  t.throws(() => parseArgs(['--seconds', '0']), /at least one second/)
  t.throws(() => parseArgs(['--strategy', 'optimistic']), /--strategy/)
  t.throws(() => parseArgs(['--colour', 'red']), /unknown option --colour/)
  t.throws(() => parseArgs(['--clients']), /needs a value/)
  t.throws(() => parseArgs(['stray']), /unexpected argument/)
  // --ha: the fault is the primary node's death; backend terminations only when asked for.
  t.match(parseArgs(['--ha', '--pooler', 'transaction', '--max-primary-kills', '2']), { terminateEveryMs: 0, ha: { pooler: 'transaction', strict: false, killPrimaryEveryMs: 180_000, maxPrimaryKills: 2 } })
  t.match(parseArgs(['--ha', '--strict', '--terminate-every-ms', '5000']), { terminateEveryMs: 5000, ha: { pooler: 'none', strict: true } })
  t.throws(() => parseArgs(['--strict']), /go with --ha/)
  t.throws(() => parseArgs(['--ha', '--pooler', 'statement']), /--pooler/)
  // --events: a nats-server of the soak's own, with or without --ha.
  t.match(parseArgs(['--ha', '--events']), { events: true, ha: { pooler: 'none' } })
  t.equal(parseArgs(['--seconds', '5']).events, undefined)
})

t.test(`bank soak: ${seconds} s, two instances, faults, nothing lost`, async (t) => {
  const summary = await runSoak({
    ...parseArgs(['--seconds', String(seconds), '--users', '8', '--clients', '16', '--readers', '2', '--terminate-every-ms', '2000', '--kill-instance-every-ms', String(Math.max(5000, Math.floor(seconds * 1000 / 2)))]),
    serverCommand: [process.execPath, ...loader, 'src/server.ts'],
    serverEnv: loaderEnv,
    command: `test/system/soak.test.ts (SOAK_SECONDS=${seconds})`,
    log: (line) => { t.comment(line) },
  })
  t.same(summary.violations, [], 'no invariant violation')
  t.ok(summary.ok)
  t.ok(summary.operations.acknowledged > 100, `${summary.operations.acknowledged} operations acknowledged (${summary.operations.perSecond}/s)`)
  t.ok(summary.faults.backendsTerminated > 0, `${summary.faults.backendsTerminated} backends terminated`)
  t.equal(summary.faults.instanceKills, 1, 'one instance killed and restarted')
  t.equal(summary.reads.negativeSeen, 0, `${summary.reads.total} reads, none negative`)
  t.equal(summary.http.fiveHundreds.other, 0, 'no 5xx but 503')
  t.equal(summary.totals.actual, summary.totals.expected, 'total = initial + acknowledged deposits − withdrawals')
  t.ok(summary.books.checkerOk, 'books checker passes')
  t.ok(summary.snapshots.checks > 0 && summary.snapshots.mismatches === 0, `${summary.snapshots.checks} live snapshots agree`)
})
