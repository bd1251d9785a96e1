import { existsSync } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { projectRoot } from '../src/tooling/project-root.js'
import type { SoakSummary } from './soak-summary.js'

/**
 * reliability/REPORT.md and the section of docs/reliability.md, from the JSON the last long runs left in reliability/:
 * soak-last.json (npm run soak -- … --out reliability/soak-last.json --report) and fuzz-last.json
 * (FUZZ_RUNS=10000 FUZZ_REPORT=reliability/fuzz-last.json npx tap test/system/fuzz.test.ts). Figures are copied, never typed.
 */
/** What `npm run soak` writes (reliability/soak.ts): one type for the writer and the reader. */
type Soak = SoakSummary

interface FuzzRoute { runs: number, statuses: Record<string, number>, fiveHundreds: number, hangs: number, violations: number }
interface Fuzz { finishedAt: string, runsPerRoute: number, seed: number | null, routes: Record<string, FuzzRoute> }

const SOAK_FILE = 'reliability/soak-last.json'
/** The soak across failover (npm run soak -- --ha … --out reliability/soak-ha-last.json --report). */
export const SOAK_HA_FILE = 'reliability/soak-ha-last.json'
const FUZZ_FILE = 'reliability/fuzz-last.json'
const FUZZ_COMMAND = `FUZZ_RUNS=10000 FUZZ_REPORT=${FUZZ_FILE} npx tap test/system/fuzz.test.ts --disable-coverage`

async function readJson<T> (file: string): Promise<T | undefined> {
  return existsSync(file) ? JSON.parse(await readFile(file, 'utf8')) as T : undefined
}

const n = (value: number): string => value.toLocaleString('en-US')
const counts = (record: Record<string, number>): string => Object.entries(record).sort(([a], [b]) => a.localeCompare(b)).map(([key, value]) => `${key}: ${n(value)}`).join(', ') || 'none'

function soakViolations (soak: Soak): number {
  if (soak.violations.length === 0) return 0
  const first = /^(\d+) violations$/.exec(soak.violations[0] ?? '')
  return first === null ? soak.violations.length : Number(first[1])
}

function soakSection (soak: Soak): string[] {
  const o = soak.operations
  return [
    '## Bank soak',
    '',
    `\`${soak.command}\` — ${soak.startedAt} to ${soak.finishedAt}`,
    '',
    '| figure | value |',
    '|---|---|',
    `| load duration | ${n(soak.loadS)} s (whole run ${n(soak.durationS)} s) |`,
    `| set-up | ${soak.options.instances} service instances (\`node dist/src/server.js\`), strategy \`${soak.options.strategy}\`, ${soak.database} PostgreSQL, ${soak.options.clients} writing clients, ${soak.options.readers} readers, ${soak.options.users + 1} users |`,
    `| logical operations | ${n(o.logical)} (${counts(o.byKind)}), ${n(o.perSecond)}/s |`,
    `| acknowledged / refused (409) | ${n(o.acknowledged)} / ${n(o.refused)} |`,
    `| ambiguous attempts (503 or lost connection), retried with the same key | ${n(o.ambiguousAttempts)} |`,
    `| retries that found the operation already committed (replayed) | ${n(o.replayedAfterAmbiguity)} |`,
    `| still ambiguous when the load stopped, resolved by a retry | ${n(o.resolvedByRetry)} |`,
    `| never resolved, reconciled from the journal | ${n(o.unknownReconciled)} |`,
    `| reads (negative balances seen) | ${n(soak.reads.total)} (${n(soak.reads.negativeSeen)}) |`,
    `| HTTP requests | ${n(soak.http.requests)} — ${counts(soak.http.byStatus)} |`,
    `| client-side errors (connections reset or refused by killed instances) | ${counts(soak.http.errors)} |`,
    `| 5xx seen | ${n(soak.http.fiveHundreds['503'])} × 503 DB_UNAVAILABLE, ${n(soak.http.fiveHundreds.other)} other |`,
    `| faults injected | pg_terminate_backend: ${n(soak.faults.terminateRounds)} rounds, ${n(soak.faults.backendsTerminated)} backends; instance SIGKILL + restart: ${n(soak.faults.instanceKills)} |`,
    `| unexpected instance exits (crashes) / restarts that failed to boot under the faults and were tried again | ${n(soak.faults.unexpectedInstanceExits)} / ${n(soak.faults.bootFailuresRetried)} |`,
    `| live snapshots (Σ balances = Σ journal, none negative) | ${n(soak.snapshots.checks)} checks, ${n(soak.snapshots.mismatches)} mismatches |`,
    `| books at the end | ${n(soak.books.users)} users, ${n(soak.books.entries)} journal entries, ${n(soak.books.transfers)} transfers, ${n(soak.books.idempotencyKeys)} idempotency keys; books checker ${soak.books.checkerOk ? 'OK' : 'FAILED'} |`,
    `| total | initial ${n(soak.totals.initial)}, expected ${n(soak.totals.expected)}, actual ${n(soak.totals.actual)} |`,
    `| **invariant violations** | **${n(soakViolations(soak))}** |`,
    '',
    ...(soak.violations.length === 0 ? [] : ['Violations:', '', ...soak.violations.map((line) => `- ${line}`), '']),
  ]
}

/** "median 10.4 s (9.1–12.0 over 26)": the middle value, the range and the count; "–" for none. */
function spread (values: number[], unit = ' s'): string {
  if (values.length === 0) return '–'
  const sorted = [...values].sort((a, b) => a - b)
  const middle = n(sorted[Math.floor(sorted.length / 2)]!)
  return `median ${middle}${unit} (${n(sorted[0]!)}–${n(sorted[sorted.length - 1]!)} over ${sorted.length})`
}

/** The soak on the HA topology: the failovers, what clients saw, the invariants, and the pace towards 1,000,000 operations. */
function haSoakSection (soak: Soak): string[] {
  const ha = soak.ha
  const o = soak.operations
  const failovers = ha?.failovers ?? []
  const hoursToMillion = o.perSecond > 0 ? 1_000_000 / o.perSecond / 3600 : Number.POSITIVE_INFINITY
  return [
    '## Bank soak across failover (HA topology)',
    '',
    `\`${soak.command}\` — ${soak.startedAt} to ${soak.finishedAt}`,
    '',
    '| | |',
    '|---|---|',
    `| set-up | deploy/local topology: etcd, two Patroni nodes (PostgreSQL 15, synchronous_mode${ha?.strict === true ? ' strict' : ', not strict'}), HAProxy on GET /primary, ${ha?.pooler === 'none' || ha === undefined ? 'no PgBouncer (service → HAProxy)' : `PgBouncer (${ha.pooler} pooling)`}; ${soak.options.instances} service instances, strategy \`${soak.options.strategy}\`, ${soak.options.clients} writing clients, ${soak.options.readers} readers, ${soak.options.users + 1} users |`,
    `| load duration | ${n(soak.loadS)} s (whole run ${n(soak.durationS)} s) |`,
    `| logical operations | ${n(o.logical)} (${n(o.perSecond)}/s): ${n(o.byKind.transfer)} transfers, ${n(o.byKind.deposit)} deposits, ${n(o.byKind.withdrawal)} withdrawals |`,
    `| outcomes | ${n(o.acknowledged)} acknowledged, ${n(o.refused)} refused; ${n(o.ambiguousAttempts)} ambiguous attempts retried with their key; ${n(o.unknownReconciled)} never resolved |`,
    `| primary-node kills (Patroni + postmaster + backends, SIGKILL) | ${n(soak.faults.primaryKills)}, every ${n((soak.options.ha?.killPrimaryEveryMs ?? 0) / 1000)} s |`,
    `| failover time (kill → new primary through HAProxy) | ${spread(failovers.map((f) => f.failoverS))} |`,
    `| service writing again after the kill | ${spread(failovers.filter((f) => f.serviceRecoveredS !== null).map((f) => f.serviceRecoveredS!))} |`,
    `| 503s per failover (within 60 s of the kill) | ${spread(failovers.map((f) => f.unavailable503), '')} |`,
    `| HTTP | ${n(soak.http.requests)} requests — ${counts(soak.http.byStatus)}; client errors: ${counts(soak.http.errors)} |`,
    `| 5xx | ${n(soak.http.fiveHundreds['503'])} × 503 DB_UNAVAILABLE (all retried to a real answer), ${n(soak.http.fiveHundreds.other)} other |`,
    `| acknowledged changes lost (answer not in the final primary's journal with its user, amount and balance after) | ${n(soak.journalMatches.mismatched)} of ${n(soak.journalMatches.checked)} |`,
    `| live snapshots (Σ balances = Σ journal, none negative) | ${n(soak.snapshots.checks)} checks, ${n(soak.snapshots.mismatches)} mismatches; checker reconnects ${n(ha?.checkerReconnects ?? 0)} |`,
    `| books on the final primary (${ha?.finalPrimary ?? '?'}) | ${n(soak.books.users)} users, ${n(soak.books.entries)} journal entries, ${n(soak.books.transfers)} transfers; books checker ${soak.books.checkerOk ? 'OK' : 'FAILED'} |`,
    `| total | initial ${n(soak.totals.initial)}, expected ${n(soak.totals.expected)}, actual ${n(soak.totals.actual)} |`,
    `| **invariant violations** (every key exactly once, nothing acknowledged lost, totals, books, no 500) | **${n(soakViolations(soak))}** |`,
    o.logical >= 1_000_000
      ? `| 1,000,000 operations | reached: ${n(o.logical)} |`
      : `| 1,000,000 operations at this pace | ${Number.isFinite(hoursToMillion) ? `${hoursToMillion.toFixed(1)} h of load` : 'n/a'} |`,
    '',
    'Each failover:',
    '',
    ...(failovers.some((f) => f.laterUnavailable === undefined)
      ? ['Recorded before the outage was bounded: 503s and the window run from the kill to the next kill; "writing again" is the first acknowledged write sent after the kill.', '']
      : ['503s, connection errors and the window: within 60 s of the kill; "later": until the next kill. "Writing again": the first acknowledged write sent after the outage began.', '']),
    '| # | killed → new primary | at (s into load) | failover (s) | service writing again (s) | 503s | connection errors | 503 window (s) | later 503s / errors | killed node back as sync standby (s) |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...failovers.map((f, index) => `| ${index + 1} | ${f.killed} → ${f.newPrimary} | ${n(f.atS)} | ${n(f.failoverS)} | ${f.serviceRecoveredS === null ? '–' : n(f.serviceRecoveredS)} | ${n(f.unavailable503)} | ${n(f.connectionErrors)} | ${n(f.windowS)} | ${f.laterUnavailable === undefined ? '–' : n(f.laterUnavailable)} | ${f.standbyBackS === null ? '–' : n(f.standbyBackS)} |`),
    '',
    ...(soak.violations.length === 0 ? [] : ['Violations:', '', ...soak.violations.map((line) => `- ${line}`), '']),
  ]
}

function fuzzSection (fuzz: Fuzz): string[] {
  const routes = Object.entries(fuzz.routes)
  const total = routes.reduce((sum, [, route]) => sum + route.runs, 0)
  return [
    '## Fuzzing',
    '',
    `\`${FUZZ_COMMAND}\` — finished ${fuzz.finishedAt}; ${n(fuzz.runsPerRoute)} runs per route, ${n(total)} requests${fuzz.seed === null ? '' : `, seed ${fuzz.seed}`}`,
    '',
    '| route | runs | answers | 5xx | hangs | violations |',
    '|---|---|---|---|---|---|',
    ...routes.map(([name, route]) => `| ${name} | ${n(route.runs)} | ${counts(route.statuses)} | ${route.fiveHundreds} | ${route.hangs} | ${route.violations} |`),
    '',
    '"closed": a CONNECT request, which Node closes at once when nothing listens for it.',
    '',
  ]
}

export async function writeReliabilityReport (root: string): Promise<void> {
  const soak = await readJson<Soak>(path.join(root, SOAK_FILE))
  const fuzz = await readJson<Fuzz>(path.join(root, FUZZ_FILE))
  const haSoak = await readJson<Soak>(path.join(root, SOAK_HA_FILE))
  const lines = [
    '# Reliability report',
    '',
    'Written by `reliability/reliability-report.ts` from the last long runs (the JSON beside this file); do not edit by hand.',
    'What is checked, and how: docs/reliability.md.',
    '',
    ...(soak === undefined ? ['No soak run recorded yet.', ''] : soakSection(soak)),
    ...(haSoak === undefined ? [] : haSoakSection(haSoak)),
    ...(fuzz === undefined ? ['No long fuzz run recorded yet.', ''] : fuzzSection(fuzz)),
  ]
  await writeFile(path.join(root, 'reliability', 'REPORT.md'), lines.join('\n'))
  await writeReadmeSection(root, soak, fuzz, haSoak)
}

async function writeReadmeSection (root: string, soak: Soak | undefined, fuzz: Fuzz | undefined, haSoak: Soak | undefined): Promise<void> {
  const readmePath = path.join(root, 'docs', 'reliability.md')
  const readme = await readFile(readmePath, 'utf8')
  const marker = '<!-- section:reliability -->'
  const start = readme.indexOf(marker)
  if (start < 0) return
  const end = readme.indexOf('<!-- section:', start + marker.length)
  const fuzzRequests = fuzz === undefined ? 0 : Object.values(fuzz.routes).reduce((sum, route) => sum + route.runs, 0)
  const fuzzFailures = fuzz === undefined ? 0 : Object.values(fuzz.routes).reduce((sum, route) => sum + route.fiveHundreds + route.hangs + route.violations, 0)
  const section = [
    marker,
    '## Reliability',
    '',
    'Fuzzing, fault injection and a bank soak, all against the real service on a real PostgreSQL, loopback only.',
    '',
    '- **Fuzzing** (`test/system/fuzz.test.ts`, fast-check): raw HTTP requests for every route — valid, near-valid and hostile bodies',
    '  (wrong types, numbers past 2^53 or a double, `-0`, unicode, deep nesting, `__proto__`/`constructor` keys, duplicate keys,',
    '  truncated JSON), odd content types, long and binary headers, odd `Idempotency-Key` values, odd methods and paths.',
    '  Each answer comes in time, is never a 5xx, every refusal is a 4xx with a string `code`, and the books (journal, balances,',
    '  users, idempotency keys) change exactly as a success says and not at all on a refusal or a replay; the books checker',
    '  passes after. `FUZZ_RUNS` sets the runs per route (300 in CI).',
    '- **Fault injection** (`test/system/faults.test.ts`, `test/system/retries.test.ts`): `pg_terminate_backend` on the service\'s',
    '  connections during bursts (every strategy); PostgreSQL stopped and started again on the same data and port mid-load;',
    '  advisory, row and table locks held past `DB_STATEMENT_TIMEOUT_MS`, and a statement running past it. Answers are the real',
    '  outcome or a prompt 503 `DB_UNAVAILABLE`, never a 500 or a hang; the service recovers by itself; every 200 has exactly one',
    '  journal entry. Clients retrying with an `Idempotency-Key` converge to exactly once, and a reply lost after the commit',
    '  (a proxy drops it) is a 503 whose retry replays the committed result.',
    '- **Bank soak** (`reliability/soak.ts`): two instances (`node dist/src/server.js`) on one throwaway database, concurrent',
    '  clients doing transfers, deposits and withdrawals under Idempotency-Keys (on `balance-api/client`: retried with the',
    '  same key after a 503 or a lost connection, moving to the other instance while one is down; every attempt is still',
    '  counted and checked), readers, `pg_terminate_backend` every few seconds and optionally an instance killed with SIGKILL and',
    '  restarted. Checked: no negative read, Σ balances = Σ journal in live snapshots and per user at the end (the books',
    '  checker), total = initial + acknowledged deposits − withdrawals, every acknowledged operation exactly once in the',
    '  journal by its key and every refused one never, no 500, no client timeout, no crash. JSON summary; exit 1 on a violation.',
    '  A 30 s version runs in `npm test` (`test/system/soak.test.ts`).',
    '- **Across failover** (`npm run soak -- --ha`): the same soak on the HA topology of `deploy/local` (section "Running past',
    '  one machine"), the primary node (Patroni + postmaster + backends) SIGKILLed every `--kill-primary-every-ms` and started',
    '  again as a standby; the checker reconnects through HAProxy; also checked: every acknowledged answer is in the final',
    '  primary\'s journal with its user, amount and balance after. Failover time, recovery and the 503 window per kill.',
    '  With `--events` (a nats-server of the soak\'s own; every instance publishes by lease): every balance rebuilt from the',
    '  JetStream stream alone and from the HTTP feed alone equals the final primary\'s, per user seq 1..n, each event once in',
    '  the stream and nothing there the database lacks (section "Events through a failover" below).',
    '  One kill under load, with `--events`, runs in CI (`test/system/failover.test.ts`).',
    '',
    '```bash',
    `${soak?.command ?? 'npm run soak -- --minutes 30 --out reliability/soak-last.json --report'}`,
    'npm run soak -- --seconds 30   # also: --users --clients --readers --instances --strategy --terminate-every-ms --kill-instance-every-ms --no-faults --report; on the HA topology: --ha --pooler --strict --kill-primary-every-ms --max-primary-kills; --events',
    `${haSoak?.command ?? 'npm run soak -- --ha --pooler transaction --minutes 10 --kill-primary-every-ms 180000 --out reliability/soak-ha-last.json --report'}`,
    'FUZZ_RUNS=10000 FUZZ_REPORT=reliability/fuzz-last.json npx tap test/system/fuzz.test.ts --disable-coverage',
    '```',
    '',
    'Last long run ([reliability/REPORT.md](../reliability/REPORT.md)):',
    '',
    ...(soak === undefined ? ['- soak: not run yet'] : [
      `- soak: \`${soak.command}\`, ${n(soak.loadS)} s: ${n(soak.operations.logical)} logical operations (${n(soak.operations.perSecond)}/s) and ${n(soak.reads.total)} reads over ${soak.options.instances} instances;`,
      `  faults: ${n(soak.faults.backendsTerminated)} backends terminated in ${n(soak.faults.terminateRounds)} rounds, ${n(soak.faults.instanceKills)} instance kills;`,
      `  5xx: ${n(soak.http.fiveHundreds['503'])} × 503 DB_UNAVAILABLE (all retried to a real answer), ${n(soak.http.fiveHundreds.other)} other; **invariant violations: ${n(soakViolations(soak))}**.`,
    ]),
    ...(haSoak?.ha === undefined ? [] : [
      `- soak across failover: \`${haSoak.command}\`, ${n(haSoak.loadS)} s: ${n(haSoak.operations.logical)} operations (${n(haSoak.operations.perSecond)}/s), ${n(haSoak.faults.primaryKills)} primary-node kills,`,
      `  failover ${spread(haSoak.ha.failovers.map((f) => f.failoverS))}; ${n(haSoak.http.fiveHundreds['503'])} × 503, ${n(haSoak.http.fiveHundreds.other)} other 5xx; acknowledged changes lost: ${n(haSoak.journalMatches.mismatched)}; **invariant violations: ${n(soakViolations(haSoak))}**.`,
    ]),
    ...(fuzz === undefined ? ['- fuzz: not run yet'] : [
      `- fuzz: ${n(fuzzRequests)} requests (${n(fuzz.runsPerRoute)} per route); 5xx, hangs and violations: ${n(fuzzFailures)}.`,
    ]),
    '',
    '',
  ].join('\n')
  await writeFile(readmePath, readme.slice(0, start) + section + (end < 0 ? '' : readme.slice(end)))
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  await writeReliabilityReport(projectRoot)
}
