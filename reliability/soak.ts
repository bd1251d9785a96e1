import { randomBytes, randomInt } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { loadConfig, type StrategyName } from '../src/config.js'
import { checkBooks, type BooksReport } from '../src/db/check-books.js'
import { freePort } from '../src/tooling/ports.js'
import { createSequelize } from '../src/plugins/database.js'
import { createThrowawayDatabase, type ThrowawayDatabase } from '../src/tooling/throwaway-database.js'
import type { Pooler, Topology } from '../deploy/local/topology.js'
import { ResilientClient } from './resilient-client.js'
import { HttpClient, sendWrite, writerClient, type HttpResult } from './soak-http.js'
import { Instance } from '../src/tooling/instance.js'
import { projectRoot } from '../src/tooling/project-root.js'
import { writeReliabilityReport } from './reliability-report.js'
import { startNatsServer, type NatsServer } from '../src/tooling/nats-server.js'
import { checkEvents, eventsEnv, publisherBefore, publisherResumed } from './soak-events.js'
import type { EventsSummary, FailoverRecord, HaOptions, Kind, SoakOptions, SoakSummary } from './soak-summary.js'

export type { FailoverRecord, HaOptions, SoakOptions, SoakSummary }

/**
 * The bank soak, after Jepsen's bank test: several service instances on one throwaway database,
 * many clients over real HTTP doing random transfers, deposits and withdrawals among a few users, each logical
 * operation under its own Idempotency-Key and retried with it after a 503 or a lost connection, plus readers;
 * meanwhile faults: pg_terminate_backend on the service's connections every few seconds, and optionally an instance
 * killed with SIGKILL and started again. Then the checker:
 * - no read ever showed a negative balance, and every live snapshot had Σ balances = Σ journal;
 * - each user's balance = Σ its journal (the ledger's books checker, npm run verify, passes);
 * - the total = the initial total + acknowledged deposits − acknowledged withdrawals (ambiguous operations are
 *   retried with their key after the faults stop; any still unknown are reconciled from the journal and counted);
 * - every acknowledged operation is in the journal exactly once (once per leg), found by its Idempotency-Key, every
 *   refused one not at all, and the journal holds nothing the clients did not send;
 * - no 500 (or other non-503 5xx), no client timeout, no instance exit the soak did not cause.
 * With --ha the database is the HA topology of deploy/local (etcd, two Patroni/PostgreSQL nodes with a
 * synchronous standby, HAProxy on the primary, optionally PgBouncer), and the fault is the primary NODE killed
 * (Patroni and postmaster, SIGKILL) every --kill-primary-every-ms, then started again as a standby. The checker's
 * connection reconnects through HAProxy; every acknowledged change must be on the new primary with its amount and
 * balance after; each failover's time (kill → a new primary through HAProxy), the service's recovery (kill → first
 * acknowledged write sent after it) and its 503 window are reported.
 * With --events the soak runs its own nats-server with JetStream, every instance publishes events by lease, and after
 * the load the stream and the HTTP feed are checked against the final database (reliability/soak-events.ts); on --ha
 * each failover also reports when the publisher moved its cursor again on the new primary.
 * Prints a JSON summary, writes it with --out, and exits 1 on any violation.
 */
interface Operation { key: string, kind: Kind, method: 'PATCH' | 'POST', path: string, body: Record<string, number>, legs: number, delta: number }

/** What became of an operation: acknowledged (2xx), refused (409), or unknown (every attempt ambiguous). */
type Final = 'acknowledged' | 'refused' | 'unknown'

const MAX_ATTEMPTS = 30
const CLIENT_TIMEOUT_MS = 30_000
const SNAPSHOT_EVERY_MS = 2000
const VIOLATION_SAMPLES = 50
/** A failover's outage is looked for in this many seconds after the kill. */
const OUTAGE_S = 60
/**
 * The books check at the end reads every idempotency key and journal entry: past a million operations it takes far
 * longer than the service's 10 s statement timeout (a 1.08M-operation HA soak lost its summary to that), so it gets
 * the most the config allows.
 */
const BOOKS_CHECK_TIMEOUT_MS = 600_000

function sleep (ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

function bump (record: Record<string, number>, key: string, by = 1): void {
  record[key] = (record[key] ?? 0) + by
}

export async function runSoak (options: SoakOptions): Promise<SoakSummary> {
  const started = Date.now()
  const startedAt = new Date(started).toISOString()
  // Every violation is counted; the first VIOLATION_SAMPLES are kept word for word.
  const violations: string[] = []
  let violationCount = 0
  const fail = (text: string): void => {
    violationCount += 1
    if (violations.length < VIOLATION_SAMPLES) violations.push(text)
  }

  let topology: Topology | undefined
  let db: ThrowawayDatabase
  if (options.ha === undefined) {
    db = await createThrowawayDatabase('soak')
  } else {
    // Loaded only here: the topology module is not needed (nor covered) by a soak on one database.
    const { startTopology } = await import('../deploy/local/topology.js')
    const ha = await startTopology({ pooler: options.ha.pooler, strict: options.ha.strict, log: options.log })
    topology = ha
    db = { url: ha.serviceUrl, name: 'balance', drop: async () => { await ha.stop() } }
  }
  // The checker goes straight to the primary (through HAProxy on --ha), never through PgBouncer.
  const checkerUrl = topology?.directUrl ?? db.url
  const runId = randomBytes(3).toString('hex')
  const instances: Instance[] = []
  const clients: HttpClient[] = []
  const admin = new ResilientClient(checkerUrl, 'soak-checker', options.log)
  let sequelize: ReturnType<typeof createSequelize> | undefined
  let nats: NatsServer | undefined
  try {
    if (options.events === true) {
      nats = await startNatsServer()
      options.log(`soak ${runId}: nats-server with JetStream on ${nats.url}`)
    }
    // 1. Instances, booting together on the fresh database (the migrations lock lets one migrate).
    for (let index = 0; index < options.instances; index += 1) {
      instances.push(new Instance({
        label: `instance-${index + 1}`,
        port: await freePort(),
        command: options.serverCommand,
        cwd: projectRoot,
        env: {
          PATH: process.env.PATH ?? '',
          DATABASE_URL: db.url,
          BALANCE_STRATEGY: options.strategy,
          LOG_LEVEL: 'error',
          DB_POOL_MAX: '8',
          // Every server-side wait is bounded well under the client's timeout (CLIENT_TIMEOUT_MS), so a client
          // timeout can only mean a real hang: acquire 5 s + statement 5 s + the driver's 2 s slack < 30 s.
          DB_CONNECT_TIMEOUT_MS: '2000',
          DB_ACQUIRE_TIMEOUT_MS: '5000',
          DB_STATEMENT_TIMEOUT_MS: '5000',
          // Behind PgBouncer (either pool mode) the service sends no startup parameters it would refuse.
          ...(options.ha !== undefined && options.ha.pooler !== 'none' ? { DB_POOLER: 'pgbouncer-transaction' } : {}),
          ...(nats === undefined ? {} : eventsEnv(nats)),
          ...options.serverEnv,
        },
      }))
    }
    await Promise.all(instances.map(async (instance) => { await instance.start() }))
    // --ha: the topology's watchdog also takes the instances down if this process dies without its finally.
    for (const instance of instances) topology?.adopt(instance.pid)
    for (const instance of instances) clients.push(new HttpClient(instance.url, options.clients + options.readers + 8, CLIENT_TIMEOUT_MS))
    options.log(`soak ${runId}: ${options.instances} instances up (${instances.map((i) => i.url).join(', ')}), database ${db.name}`)

    const byStatus: Record<string, number> = {}
    const errors: Record<string, number> = {}
    let requests = 0
    let next = 0
    // --ha: the failover in progress (from a kill to the next one) collects what the clients saw.
    const failovers: FailoverRecord[] = []
    let failover: { record: FailoverRecord, killedAt: number, firstBad: number, lastBad: number } | undefined
    const noteAnswer = (sentAt: number, method: string, result: HttpResult): void => {
      if (failover === undefined) return
      const bad = result.kind === 'error' || result.status === 503
      if (bad && Date.now() - failover.killedAt > OUTAGE_S * 1000) {
        failover.record.laterUnavailable += 1
      } else if (bad) {
        if (result.kind === 'error') failover.record.connectionErrors += 1
        else failover.record.unavailable503 += 1
        const now = Date.now()
        if (failover.firstBad === 0) failover.firstBad = now
        failover.lastBad = now
        failover.record.windowS = Math.round((failover.lastBad - failover.firstBad) / 100) / 10
      } else if (method !== 'GET' && result.status < 300 && failover.firstBad !== 0 && sentAt >= failover.firstBad && failover.record.serviceRecoveredS === null) {
        failover.record.serviceRecoveredS = Math.round((Date.now() - failover.killedAt) / 100) / 10
      }
    }
    /** Every request sent, by the raw client or the writers' balance-api/client: counted, and checked. */
    const observe = (method: string, url: string, result: HttpResult, sentAt: number): void => {
      requests += 1
      noteAnswer(sentAt, method, result)
      if (result.kind === 'answer') bump(byStatus, String(result.status))
      else bump(errors, result.error)
      if (result.kind === 'error' && ['CLIENT_TIMEOUT', 'TIMEOUT'].includes(result.error)) fail(`${method} ${url}: no answer within the client timeout`)
      if (result.kind === 'answer' && result.status >= 500 && result.status !== 503) fail(`${method} ${url}: ${result.status} ${JSON.stringify(result.body).slice(0, 300)}`)
      if (result.kind === 'answer' && result.status === 503 && result.body.code !== 'DB_UNAVAILABLE') fail(`${method} ${url}: 503 without DB_UNAVAILABLE: ${JSON.stringify(result.body).slice(0, 200)}`)
    }
    /** Sends to the instances in turn; a retry goes to the next one. */
    const call = async (method: string, url: string, body?: unknown, headers?: Record<string, string>): Promise<HttpResult> => {
      const client = clients[next % clients.length]!
      next += 1
      const sentAt = Date.now()
      const result = await client.request(method, url, body, headers)
      observe(method, url, result, sentAt)
      return result
    }
    /** The writers' clients (balance-api/client, one retry logic); each attempt is observed like a raw request. */
    const writerApis = Array.from({ length: options.clients }, (_, index) => writerClient(instances.map((instance) => instance.url), index, CLIENT_TIMEOUT_MS, MAX_ATTEMPTS, (attempt) => {
      observe(attempt.method, attempt.path, attempt.status === undefined
        ? { kind: 'error', error: attempt.code ?? 'unknown' }
        : { kind: 'answer', status: attempt.status, body: { code: attempt.code }, replayed: false }, Date.now() - attempt.ms)
    }))

    // 2. Users, each created under a key and retried until it exists.
    const userIds = [1]
    let initialTotal = 10_000
    for (let index = 0; index < options.users; index += 1) {
      for (let attempt = 1; ; attempt += 1) {
        const result = await call('POST', '/api/users', { balance: options.initialBalance }, { 'idempotency-key': `soak-${runId}-user-${index}` })
        if (result.kind === 'answer' && result.status === 201) {
          userIds.push(result.body.id as number)
          initialTotal += options.initialBalance
          break
        }
        if (attempt >= MAX_ATTEMPTS) throw new Error(`could not create user ${index}: ${JSON.stringify(result)}`)
        await sleep(100)
      }
    }

    // 3. Load, readers, snapshots and faults until the deadline.
    // An exception anywhere (say an instance that cannot boot again) ends the load for everyone.
    let aborted: unknown
    const loadStarted = Date.now()
    const deadline = loadStarted + options.durationMs
    const running = (): boolean => aborted === undefined && Date.now() < deadline
    const abortOn = async (task: Promise<void>): Promise<void> => {
      try { await task } catch (error) { aborted ??= error; throw error }
    }
    const expectedLegs = new Map<string, number>()
    const unknown: Operation[] = []
    const byKind: Record<Kind, number> = { transfer: 0, deposit: 0, withdrawal: 0 }
    let acknowledged = 0
    let refused = 0
    let ambiguousAttempts = 0
    let replayedAfterAmbiguity = 0
    let acknowledgedDelta = 0

    const pick = (): number => userIds[randomInt(userIds.length)]!
    const makeOperation = (clientIndex: number, sequence: number): Operation => {
      const key = `soak-${runId}-${clientIndex}-${sequence}`
      const roll = randomInt(10)
      const amount = 1 + randomInt(1000)
      if (roll < 4 && userIds.length > 1) {
        const from = pick()
        let to = pick()
        while (to === from) to = pick()
        return { key, kind: 'transfer', method: 'POST', path: '/api/transfers', body: { fromUserId: from, toUserId: to, amount }, legs: 2, delta: 0 }
      }
      const deposit = roll < 7
      return { key, kind: deposit ? 'deposit' : 'withdrawal', method: 'PATCH', path: '/api/balance', body: { userId: pick(), amount: deposit ? amount : -amount }, legs: 1, delta: deposit ? amount : -amount }
    }

    /** One logical operation: sent, and re-sent with its key after anything ambiguous (by the client). */
    const perform = async (operation: Operation, attempts: number, writer = 0): Promise<Final> => {
      const outcome = await sendWrite(writerApis[writer % writerApis.length]!, operation, attempts)
      ambiguousAttempts += outcome.final === 'unknown' ? outcome.attempts : outcome.attempts - 1
      if (outcome.final === 'acknowledged' && outcome.attempts > 1 && outcome.replayed) replayedAfterAmbiguity += 1
      if (outcome.final === 'acknowledged') recordLegs(operation, outcome.body)
      if (outcome.final !== 'unexpected') return outcome.final
      fail(`${operation.key} ${operation.method} ${operation.path} ${JSON.stringify(operation.body)}: ${outcome.detail}`)
      return 'refused'
    }
    // What each acknowledged answer said (user:amount:balance after, per leg, sorted), checked against the journal.
    const acknowledgedLegs = new Map<string, string>()
    const recordLegs = (operation: Operation, body: Record<string, unknown> = {}): void => {
      const legs: string[] = []
      if (operation.kind === 'transfer') {
        const from = body.from as { userId?: number, balance?: number } | undefined
        const to = body.to as { userId?: number, balance?: number } | undefined
        legs.push(`${from?.userId}:${-operation.body.amount!}:${from?.balance}`, `${to?.userId}:${operation.body.amount}:${to?.balance}`)
      } else {
        legs.push(`${body.userId as number}:${body.amount as number}:${body.balance as number}`)
      }
      acknowledgedLegs.set(operation.key, legs.sort().join(' '))
    }

    const settle = (operation: Operation, final: Final): void => {
      if (final === 'acknowledged') {
        acknowledged += 1
        acknowledgedDelta += operation.delta
        expectedLegs.set(operation.key, operation.legs)
      } else if (final === 'refused') {
        refused += 1
        expectedLegs.set(operation.key, 0)
      } else {
        unknown.push(operation)
      }
    }

    const writers = Array.from({ length: options.clients }, async (_, clientIndex) => {
      for (let sequence = 0; running(); sequence += 1) {
        const operation = makeOperation(clientIndex, sequence)
        byKind[operation.kind] += 1
        settle(operation, await perform(operation, MAX_ATTEMPTS, clientIndex))
      }
    })

    const reads = { total: 0, negativeSeen: 0, unavailable: 0, errors: 0 }
    const readers = Array.from({ length: options.readers }, async () => {
      while (running()) {
        const id = pick()
        const history = randomInt(10) === 0
        const result = await call('GET', history ? `/api/users/${id}/transactions?limit=20` : `/api/users/${id}`)
        reads.total += 1
        if (result.kind === 'error') { reads.errors += 1; await sleep(20); continue }
        if (result.status === 503) { reads.unavailable += 1; await sleep(20); continue }
        if (result.status !== 200) { fail(`GET user ${id}: ${result.status} ${JSON.stringify(result.body).slice(0, 200)}`); continue }
        const balances = history
          ? ((result.body.items as Array<{ balanceAfter: number }> | undefined) ?? []).map((item) => item.balanceAfter)
          : [result.body.balance as number]
        for (const balance of balances) {
          if (!Number.isSafeInteger(balance) || balance < 0) {
            reads.negativeSeen += 1
            fail(`a read of user ${id} showed balance ${String(balance)}`)
          }
        }
      }
    })

    const snapshots = { checks: 0, mismatches: 0 }
    const snapshotter = (async () => {
      while (running()) {
        await sleep(SNAPSHOT_EVERY_MS)
        // One statement, one snapshot: the balances and the journal must agree at every moment.
        const row = (await admin.query<{ balances: string, journal: string, negative: string }>(`SELECT
          (SELECT coalesce(sum(balance), 0) FROM users)::text AS balances,
          (SELECT coalesce(sum(amount), 0) FROM journal_entries)::text AS journal,
          (SELECT count(*) FROM users WHERE balance < 0)::text AS negative`)).rows[0]!
        snapshots.checks += 1
        if (row.balances !== row.journal || row.negative !== '0') {
          snapshots.mismatches += 1
          fail(`live snapshot: Σ balances ${row.balances}, Σ journal ${row.journal}, negative balances ${row.negative}`)
        }
      }
    })()

    const faults = { terminateRounds: 0, backendsTerminated: 0, instanceKills: 0, primaryKills: 0 }
    const terminator = (async () => {
      if (options.terminateEveryMs <= 0) return
      const injector = new ResilientClient(checkerUrl, 'soak-fault-injector', options.log)
      try {
        while (running()) {
          await sleep(Math.min(options.terminateEveryMs, Math.max(0, deadline - Date.now())))
          if (!running()) break
          const killed = await injector.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
            WHERE datname = current_database() AND application_name = 'balance-api'`)
          faults.terminateRounds += 1
          faults.backendsTerminated += killed.rowCount ?? 0
        }
      } finally {
        await injector.end()
      }
    })()
    const killer = (async () => {
      if (options.killInstanceEveryMs <= 0 || instances.length < 2) return
      for (let round = 0; ; round += 1) {
        await sleep(Math.min(options.killInstanceEveryMs, Math.max(0, deadline - Date.now())))
        if (!running()) break
        const victim = instances[round % instances.length]!
        await victim.kill()
        faults.instanceKills += 1
        options.log(`soak ${runId}: killed ${victim.label} (SIGKILL), starting it again`)
        await sleep(1000)
        await victim.start()
        topology?.adopt(victim.pid)
      }
    })()

    // --events: per failover, when the publisher moves its cursor again on the new primary (awaited before the checks).
    const publisherWatches: Array<Promise<void>> = []
    const primaryKiller = (async () => {
      const every = options.ha?.killPrimaryEveryMs ?? 0
      if (topology === undefined || options.ha === undefined || every <= 0) return
      for (;;) {
        await sleep(Math.min(every, Math.max(0, deadline - Date.now())))
        if (!running()) break
        if (options.ha.maxPrimaryKills > 0 && faults.primaryKills >= options.ha.maxPrimaryKills) break
        // Patroni promotes only the synchronous standby: wait until the last killed node is one again (not past the end).
        try {
          await topology.waitForSyncStandby(Math.min(120_000, Math.max(0, deadline - Date.now())))
        } catch (error) {
          if (!running()) break
          throw error
        }
        const victim = await topology.waitForPrimary(30_000)
        if (!running()) break
        const holderBefore = nats === undefined ? null : await publisherBefore(admin)
        const killedAt = Date.now()
        const record: FailoverRecord = { killed: victim.name, newPrimary: '', atS: Math.round((killedAt - loadStarted) / 100) / 10, failoverS: 0, serviceRecoveredS: null, unavailable503: 0, connectionErrors: 0, windowS: 0, laterUnavailable: 0, standbyBackS: null }
        failover = { record, killedAt, firstBad: 0, lastBad: 0 }
        failovers.push(record)
        await topology.killNode(victim)
        faults.primaryKills += 1
        options.log(`soak ${runId}: killed the primary node ${victim.name} (Patroni + postmaster, SIGKILL)`)
        const promoted = await topology.waitForPrimary(60_000, victim.name)
        record.newPrimary = promoted.name
        record.failoverS = Math.round((Date.now() - killedAt) / 100) / 10
        if (nats !== undefined) {
          publisherWatches.push(publisherResumed(admin, killedAt, holderBefore).then((resumed) => {
            record.eventsResumedS = resumed.resumedS
            record.eventsHolderChanged = resumed.holderChanged
          }))
        }
        options.log(`soak ${runId}: ${promoted.name} is primary after ${record.failoverS} s; starting ${victim.name} again as a standby`)
        topology.startNode(victim)
        void topology.waitForSyncStandby(every).then(() => { record.standbyBackS = Math.round((Date.now() - killedAt) / 100) / 10 }, () => {})
      }
    })()

    const progress = setInterval(() => {
      const seconds = (Date.now() - loadStarted) / 1000
      options.log(`soak ${runId}: ${Math.round(seconds)} s, ${acknowledged + refused + unknown.length} operations (${Math.round((acknowledged + refused) / Math.max(1, seconds))}/s), ${reads.total} reads, ${faults.backendsTerminated} backends terminated, ${faults.instanceKills} kills, ${faults.primaryKills} primary kills, ${violationCount} violations`)
    }, 30_000)
    try {
      await Promise.all([...writers, ...readers, snapshotter, terminator, killer, primaryKiller].map(abortOn))
    } finally {
      clearInterval(progress)
    }
    const loadS = (Date.now() - loadStarted) / 1000

    // 4. Faults are over: every instance must be up; ambiguous operations retried with their own key.
    for (const instance of instances) {
      if (!instance.running) await instance.start()
    }
    let resolvedByRetry = 0
    const stillUnknown: Operation[] = []
    for (const operation of unknown.splice(0)) {
      const final = await perform(operation, MAX_ATTEMPTS)
      if (final === 'unknown') stillUnknown.push(operation)
      else { resolvedByRetry += 1; settle(operation, final) }
    }

    // 5. Events (--events): the stream and the feed against the database, once the publisher has caught up.
    await Promise.all(publisherWatches)
    let events: EventsSummary | undefined
    if (nats !== undefined) {
      events = await checkEvents({ admin, databaseUrl: checkerUrl, nats, instanceUrls: instances.map((instance) => instance.url), loadEnded: loadStarted + loadS * 1000, fail, log: options.log })
      options.log(`soak ${runId}: events: ${events.events} in the database, ${events.streamMessages} stream messages, ${events.feedEvents} in the feed, ` +
        `drained ${events.drainS} s after the load (${violationCount} violations so far)`)
    }

    // 6. The journal, by Idempotency-Key.
    const entries = await admin.query<[string, number, string]>({
      text: `SELECT idempotency_key, count(*)::int, string_agg(user_id || ':' || amount || ':' || balance_after, ' ')
        FROM journal_entries WHERE idempotency_key LIKE $1 GROUP BY idempotency_key`,
      values: [`soak-${runId}-%`],
      rowMode: 'array',
    })
    const found = new Map<string, number>()
    const journalLegs = new Map<string, string>()
    for (const [key, count, legs] of entries.rows) {
      found.set(key, count)
      journalLegs.set(key, legs.split(' ').sort().join(' '))
    }
    for (const [key, legs] of expectedLegs) {
      const count = found.get(key) ?? 0
      if (count !== legs) fail(`${key}: ${count} journal entries, expected ${legs} (${legs === 0 ? 'refused' : 'acknowledged'})`)
      found.delete(key)
    }
    // Every acknowledged answer is in the journal as it was told: the same user, amount and balance after.
    const journalMatches = { checked: 0, mismatched: 0 }
    for (const [key, answered] of acknowledgedLegs) {
      journalMatches.checked += 1
      const stored = journalLegs.get(key)
      if (stored !== answered) {
        journalMatches.mismatched += 1
        fail(`${key}: answered ${answered}, journal has ${stored ?? 'nothing'} (user:amount:balance after)`)
      }
    }
    let unknownDelta = 0
    for (const operation of stillUnknown) {
      const count = found.get(operation.key) ?? 0
      if (count !== 0 && count !== operation.legs) fail(`${operation.key}: ${count} journal entries for an operation of ${operation.legs}`)
      if (count === operation.legs) unknownDelta += operation.delta
      found.delete(operation.key)
    }
    for (const [key, legs] of found) {
      // Users' opening entries carry their creation keys; anything else is an operation no client sent.
      if (!key.startsWith(`soak-${runId}-user-`) || legs !== 1) fail(`${key}: ${legs} journal entries no client operation accounts for`)
    }
    const keyless = await admin.query<{ n: string }>('SELECT count(*) AS n FROM journal_entries WHERE idempotency_key IS NULL')
    if (Number(keyless.rows[0]?.n) !== 1) fail(`${keyless.rows[0]?.n} journal entries without a key; only the seed's opening entry has none`)

    // 7. Totals and the books.
    const expectedTotal = initialTotal + acknowledgedDelta + unknownDelta
    const actualTotal = Number((await admin.query<{ total: string }>('SELECT coalesce(sum(balance), 0)::text AS total FROM users')).rows[0]?.total)
    if (actualTotal !== expectedTotal) fail(`total ${actualTotal} ≠ initial ${initialTotal} + acknowledged deposits − withdrawals ${acknowledgedDelta} + reconciled ${unknownDelta} = ${expectedTotal}`)
    // The books check on the final primary (through HAProxy on --ha), on a fresh connection.
    const finalPrimary = topology === undefined ? undefined : await topology.waitForPrimary(60_000)
    options.log(`soak ${runId}: journal, keys and totals checked (${violationCount} violations); running the books check on ${finalPrimary?.name ?? 'the database'}`)
    sequelize = createSequelize(checkerUrl, loadConfig({ DATABASE_URL: checkerUrl, LOG_LEVEL: 'silent', DB_STATEMENT_TIMEOUT_MS: String(BOOKS_CHECK_TIMEOUT_MS) }, false), () => {})
    const booksStarted = Date.now()
    // A books check that cannot run is a failed run, with its summary still written.
    const books = await checkBooks(sequelize).catch((error: Error) => {
      fail(`books: the check could not run: ${error.message}`)
      const unchecked: BooksReport = { ok: false, users: 0, entries: 0, transfers: 0, idempotencyKeys: 0, holds: 0, violations: [] }
      return unchecked
    })
    options.log(`soak ${runId}: books check done in ${Math.round((Date.now() - booksStarted) / 1000)} s`)
    for (const violation of books.violations) fail(`books: ${violation.check}: ${violation.count} × ${violation.description}`)
    const unexpectedInstanceExits = instances.reduce((sum, instance) => sum + instance.unexpectedExits, 0)
    const bootFailures = instances.reduce((sum, instance) => sum + instance.bootFailures, 0)
    if (unexpectedInstanceExits > 0) fail(`${unexpectedInstanceExits} instance exits the soak did not cause:\n${instances.map((i) => i.tail()).join('\n')}`)

    const logical = byKind.transfer + byKind.deposit + byKind.withdrawal
    const summary: SoakSummary = {
      kind: 'soak',
      ok: violationCount === 0,
      command: options.command,
      startedAt,
      finishedAt: new Date().toISOString(),
      durationS: Math.round((Date.now() - started) / 100) / 10,
      loadS: Math.round(loadS * 10) / 10,
      options: {
        durationMs: options.durationMs,
        users: options.users,
        initialBalance: options.initialBalance,
        clients: options.clients,
        readers: options.readers,
        instances: options.instances,
        strategy: options.strategy,
        terminateEveryMs: options.terminateEveryMs,
        killInstanceEveryMs: options.killInstanceEveryMs,
        ...(options.ha === undefined ? {} : { ha: options.ha }),
        ...(options.events === true ? { events: true } : {}),
        report: options.report,
        ...(options.out === undefined ? {} : { out: options.out }),
      },
      database: topology !== undefined ? 'ha' : process.env.DATABASE_URL === undefined || process.env.DATABASE_URL === '' ? 'embedded' : 'external',
      ...(options.ha === undefined || finalPrimary === undefined
        ? {}
        : { ha: { pooler: options.ha.pooler, strict: options.ha.strict, failovers, finalPrimary: finalPrimary.name, checkerReconnects: admin.reconnects } }),
      operations: {
        logical,
        byKind,
        acknowledged,
        refused,
        ambiguousAttempts,
        resolvedByRetry,
        replayedAfterAmbiguity,
        unknownReconciled: stillUnknown.length,
        perSecond: Math.round(logical / Math.max(1, loadS)),
      },
      reads,
      http: {
        requests,
        byStatus,
        errors,
        fiveHundreds: {
          503: byStatus['503'] ?? 0,
          other: Object.entries(byStatus).filter(([status]) => Number(status) >= 500 && status !== '503').reduce((sum, [, n]) => sum + n, 0),
        },
      },
      faults: { ...faults, unexpectedInstanceExits, bootFailuresRetried: bootFailures },
      snapshots,
      books: { users: books.users, entries: books.entries, transfers: books.transfers, idempotencyKeys: books.idempotencyKeys, checkerOk: books.ok },
      journalMatches,
      ...(events === undefined ? {} : { events }),
      totals: { initial: initialTotal, expected: expectedTotal, actual: actualTotal },
      violations: violationCount === 0 ? [] : [`${violationCount} violations`, ...violations],
    }
    if (options.out !== undefined) {
      await mkdir(path.dirname(path.resolve(options.out)), { recursive: true })
      await writeFile(options.out, JSON.stringify(summary, null, 2) + '\n')
    }
    if (options.report) await writeReliabilityReport(projectRoot)
    return summary
  } finally {
    for (const client of clients) client.close()
    await Promise.all(instances.map(async (instance) => { await instance.stop() }))
    await admin.end().catch(() => {})
    await sequelize?.close().catch(() => {})
    await db.drop()
    await nats?.dispose()
  }
}

/** `--minutes N` or `--seconds N`, and the rest; see docs/reliability.md. */
export function parseArgs (argv: string[]): Omit<SoakOptions, 'log' | 'command' | 'serverCommand' | 'serverEnv'> {
  const values = new Map<string, string>()
  const flags = new Set<string>()
  for (let index = 0; index < argv.length; index += 1) {
    const arg = argv[index]!
    if (!arg.startsWith('--')) throw new Error(`unexpected argument ${arg}`)
    const name = arg.slice(2)
    if (['report', 'no-faults', 'no-kills', 'ha', 'strict', 'events'].includes(name)) { flags.add(name); continue }
    const value = argv[index + 1]
    if (value === undefined) throw new Error(`--${name} needs a value`)
    values.set(name, value)
    index += 1
  }
  const number = (name: string, fallback: number, min: number, max: number): number => {
    const text = values.get(name)
    values.delete(name)
    const value = text === undefined ? fallback : Number(text)
    if (!Number.isFinite(value) || value < min || value > max) throw new Error(`--${name} must be a number in ${min}..${max}`)
    return value
  }
  const minutes = number('minutes', 0, 0, 24 * 60)
  const seconds = number('seconds', minutes > 0 ? 0 : 60, 0, 24 * 3600)
  const strategy = values.get('strategy') ?? 'advisory'
  values.delete('strategy')
  if (!['advisory', 'atomic', 'row-lock'].includes(strategy)) throw new Error('--strategy must be advisory, atomic or row-lock')
  const out = values.get('out')
  values.delete('out')
  const ha = flags.has('ha')
  const pooler = values.get('pooler') ?? 'none'
  values.delete('pooler')
  if (!['none', 'session', 'transaction'].includes(pooler)) throw new Error('--pooler must be none, session or transaction')
  if (!ha && (flags.has('strict') || pooler !== 'none' || values.has('kill-primary-every-ms') || values.has('max-primary-kills'))) throw new Error('--pooler, --strict, --kill-primary-every-ms and --max-primary-kills go with --ha')
  const killPrimaryEveryMs = flags.has('no-faults') ? 0 : number('kill-primary-every-ms', 180_000, 0, 24 * 3_600_000)
  const maxPrimaryKills = number('max-primary-kills', 0, 0, 10_000)
  const options = {
    durationMs: Math.round((minutes * 60 + seconds) * 1000),
    users: number('users', 10, 1, 1000),
    initialBalance: number('initial-balance', 100_000, 0, 1e12),
    clients: number('clients', 32, 1, 1000),
    readers: number('readers', 4, 0, 100),
    instances: number('instances', 2, 1, 8),
    strategy: strategy as StrategyName,
    // On --ha the fault is the primary node's death; backend terminations only when asked for.
    terminateEveryMs: flags.has('no-faults') || (ha && !values.has('terminate-every-ms')) ? 0 : number('terminate-every-ms', 3000, 100, 3_600_000),
    killInstanceEveryMs: flags.has('no-kills') || flags.has('no-faults') ? 0 : number('kill-instance-every-ms', 0, 0, 3_600_000),
    report: flags.has('report'),
    ...(flags.has('events') ? { events: true } : {}),
    ...(out === undefined ? {} : { out }),
    ...(ha ? { ha: { pooler: pooler as Pooler, strict: flags.has('strict'), killPrimaryEveryMs, maxPrimaryKills } } : {}),
  }
  values.delete('terminate-every-ms')
  values.delete('kill-instance-every-ms')
  if (values.size > 0) throw new Error(`unknown option --${[...values.keys()][0]}`)
  if (options.durationMs < 1000) throw new Error('the soak needs at least one second')
  return options
}

async function main (): Promise<void> {
  const argv = process.argv.slice(2)
  const options = parseArgs(argv)
  const summary = await runSoak({
    ...options,
    serverCommand: [process.execPath, 'dist/src/server.js'],
    command: `npm run soak -- ${argv.join(' ')}`.trim(),
    log: (line) => { console.error(`[${new Date().toISOString()}] ${line}`) },
  })
  process.stdout.write(JSON.stringify(summary, null, 2) + '\n')
  process.exitCode = summary.ok ? 0 : 1
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  main().catch((error: unknown) => {
    console.error(error)
    process.exitCode = 2
  })
}
