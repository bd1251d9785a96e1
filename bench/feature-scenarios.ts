import pg from 'pg'
import { createThrowawayDatabase, type ThrowawayDatabase } from '../src/tooling/throwaway-database.js'
import { watchProcess, type ChildServer } from '../src/tooling/processes.js'
import { burstBooksChecks, burstChecks, burstFigures, journalledChecks, loadChecks, loadFigures } from './checks.js'
import {
  BURST_USER, books, createFixtures, createUser, eventCount, holdBooks, journalCount, resetBalance, settledJournalCount,
} from './database.js'
import { burst, clientBurst, holdCaptureLoad, load, send, type BurstOutcome } from './load.js'
import { BULK_CHANGES_PER_REQUEST, BULK_USERS, type BenchOptions, type FeatureScenarioName } from './options.js'
import type { RunRecord, TargetSpec, Variant } from './results.js'

/**
 * The feature scenarios (client-burst, bulk, holds, events), measured on one service: the run's advisory service with
 * group commit on (bench/run.ts picks it), next to the HTTP floor where the floor can answer the same requests.
 */

/** Connections of the bulk requests: 10 requests of 100 changes in flight at a time. */
export const BULK_CONNECTIONS = 10

export interface FeatureStep extends TargetSpec {
  scenario: FeatureScenarioName
  repetition: number
}

/** Users the feature scenarios add to the feature service's database. */
export interface FeatureFixtures {
  /** BULK_USERS contiguous ids: the bulk scenario's users, for its bulk requests and its single PATCHes alike. */
  bulkFrom: number
  /** The holds scenario's hot row (changes and hold → capture pairs). */
  holdsHotUser: number
}

export async function createFeatureFixtures (admin: pg.Pool): Promise<FeatureFixtures> {
  const bulk = await createFixtures(admin, BULK_USERS - 1)
  const holds = await createFixtures(admin, 0)
  return { bulkFrom: bulk.hotUser, holdsHotUser: holds.hotUser }
}

/** One EVENTS value of the events scenario: its own database (the switch is per database) and, while measured, a service. */
export interface EventsSide {
  mode: 'on' | 'off'
  db: ThrowawayDatabase
  admin: pg.Pool
  hotUser: number
  server?: ChildServer
}

export type StartEventsService = (db: ThrowawayDatabase, events: 'on' | 'off') => Promise<ChildServer>

/**
 * The events scenario's two databases, each migrated by a first boot of its service (EVENTS=off disables the event
 * triggers at boot) and given a hot-row user. The services run only while the scenario is measured (startEventsServices):
 * two more pools of DB_POOL_MAX for the whole run would crowd a max_connections of 100.
 */
export async function createEventsSides (options: BenchOptions, start: StartEventsService): Promise<EventsSide[]> {
  const sides: EventsSide[] = []
  try {
    for (const mode of ['on', 'off'] as const) {
      const db = await createThrowawayDatabase(`bench_events_${mode}`, options.databaseUrl)
      const admin = new pg.Pool({ connectionString: db.url, max: 2, application_name: 'balance-bench-admin' })
      admin.on('error', () => {})
      const side: EventsSide = { mode, db, admin, hotUser: 0 }
      sides.push(side)
      const server = await start(db, mode)
      await server.stop()
      side.hotUser = (await createFixtures(admin, 0)).hotUser
    }
    return sides
  } catch (error) {
    await dropEventsSides(sides)
    throw error
  }
}

/** Boots the services not running yet and warms each (unmeasured load on its hot row), as the run warms every server. */
export async function startEventsServices (sides: EventsSide[], options: BenchOptions, start: StartEventsService): Promise<void> {
  for (const side of sides) {
    if (side.server !== undefined) continue
    side.server = await start(side.db, side.mode)
    await load({ url: side.server.url, connections: options.connections, seconds: options.warmupSeconds, body: () => ({ userId: side.hotUser, amount: 1 }) })
    await settledJournalCount(side.admin)
  }
}

export async function stopEventsServices (sides: EventsSide[]): Promise<void> {
  for (const side of sides) {
    await side.server?.stop()
    delete side.server
  }
}

export async function dropEventsSides (sides: EventsSide[]): Promise<void> {
  await stopEventsServices(sides)
  for (const side of sides) {
    await side.admin.end().catch(() => {})
    await side.db.drop()
  }
}

export interface FeatureContext {
  options: BenchOptions
  floor: ChildServer
  /** The feature service and its database's admin pool and fixtures. */
  service: ChildServer
  admin: pg.Pool
  fixtures: FeatureFixtures
  events: EventsSide[]
}

type Measured = Pick<RunRecord, 'figures' | 'detail' | 'failures'>

/** A burst at `server` (its RSS and CPU watched), its figures, and the exact half-`ok`, half-409 split checked. */
export async function watchedBurst (server: ChildServer, count: number, ok: number, run: () => Promise<BurstOutcome>): Promise<Measured> {
  const watch = await watchProcess(server.pid)
  const outcome = await run()
  return {
    figures: burstFigures(outcome, await watch.stop()),
    detail: { statuses: outcome.statuses, codes: outcome.codes, errors: outcome.errors, ...(outcome.attempts === undefined ? {} : { attempts: outcome.attempts }) },
    failures: burstChecks(outcome, count, ok),
  }
}

/** A hot-row load of `PATCH +1` on `userId` for `seconds` (server watched); every answer 2xx, one journal entry per 2xx. */
async function watchedHotLoad (server: ChildServer, admin: pg.Pool, userId: number, options: BenchOptions): Promise<Measured & { journalled: number }> {
  const before = await journalCount(admin)
  const watch = await watchProcess(server.pid)
  const outcome = await load({ url: server.url, connections: options.connections, seconds: options.featureSeconds, body: () => ({ userId, amount: 1 }) })
  const usage = await watch.stop()
  const journalled = await settledJournalCount(admin) - before
  return {
    figures: loadFigures(outcome, outcome.responses, usage),
    detail: { ...outcome, journalled },
    failures: [...loadChecks(outcome), ...journalledChecks(journalled, outcome.ok2xx, options.connections)],
    journalled,
  }
}

async function resetFloor (floor: ChildServer, balance: number): Promise<void> {
  await fetch(`${floor.url}/bench/reset`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ userId: BURST_USER, balance }) })
}

/**
 * Measures one feature step into `record` (figures, detail, failures). Returns the admin pool of the database it
 * wrote to (the caller checks the global invariants there), or undefined for the floor.
 */
export async function measureFeature (step: FeatureStep, ctx: FeatureContext, record: RunRecord): Promise<pg.Pool | undefined> {
  const { options, floor } = ctx
  // The client burst is the seed burst; the holds and events bursts each compare two bursts of --feature-burst.
  const count = step.scenario === 'client-burst' ? options.burst : options.featureBurst
  const half = count / 2
  const variant: Variant | undefined = step.variant

  if (step.scenario === 'client-burst') {
    if (step.kind === 'floor') await resetFloor(floor, count)
    else await resetBalance(ctx.admin, BURST_USER, count)
    const server = step.kind === 'floor' ? floor : ctx.service
    const before = step.kind === 'floor' ? undefined : await books(ctx.admin, BURST_USER)
    Object.assign(record, await watchedBurst(server, count, 200, async () => await clientBurst(server.url, count, { userId: BURST_USER, amount: -2 })))
    if (before !== undefined) record.failures.push(...burstBooksChecks(before, await books(ctx.admin, BURST_USER), half))
    return step.kind === 'floor' ? undefined : ctx.admin
  }

  if (step.scenario === 'bulk') {
    const requests = options.bulkRequests
    const changes = requests * BULK_CHANGES_PER_REQUEST
    const user = (i: number): number => ctx.fixtures.bulkFrom + (i % BULK_USERS)
    const before = await journalCount(ctx.admin)
    const watch = await watchProcess(ctx.service.pid)
    const outcome = variant === 'single'
      ? await send(ctx.service.url, '/api/balance', 'PATCH', options.connections, changes, (i) => ({ userId: user(i), amount: 1 }))
      : await send(ctx.service.url, '/api/balance/batch', 'POST', BULK_CONNECTIONS, requests,
        (i) => ({ changes: Array.from({ length: BULK_CHANGES_PER_REQUEST }, (_, k) => ({ userId: user(i * BULK_CHANGES_PER_REQUEST + k), amount: 1 })) }))
    const usage = await watch.stop()
    const written = await settledJournalCount(ctx.admin) - before
    const expected = variant === 'single' ? changes : requests
    record.figures = { changesPerSec: changes / (outcome.wallMs / 1000), wallMs: outcome.wallMs, p50Ms: outcome.p50Ms, p99Ms: outcome.p99Ms, peakRssMb: usage.peakRssMb, cpuMs: usage.cpuMs }
    record.detail = { ...outcome, changes, journalled: written }
    record.failures = loadChecks(outcome)
    if (outcome.ok2xx !== expected) record.failures.push(`${outcome.ok2xx} × 2xx for ${expected} requests`)
    if (written !== changes) record.failures.push(`${written} journal entries for ${changes} changes`)
    return ctx.admin
  }

  if (step.scenario === 'holds') {
    if (step.kind === 'floor') {
      await resetFloor(floor, count)
      Object.assign(record, await watchedBurst(floor, count, variant === 'hold-burst' ? 201 : 200, async () => variant === 'hold-burst'
        ? await burst(`${floor.url}/api/holds`, count, { userId: BURST_USER, amount: 2 }, undefined, 'POST')
        : await burst(`${floor.url}/api/balance`, count, { userId: BURST_USER, amount: -2 })))
      return undefined
    }
    const { admin, service } = ctx
    if (variant === 'change-burst' || variant === 'hold-burst') {
      // A hold burst leaves its holds active: each one gets a user of its own, holding exactly the burst.
      const userId = variant === 'hold-burst' ? await createUser(admin, count) : BURST_USER
      if (variant === 'change-burst') await resetBalance(admin, BURST_USER, count)
      const before = await books(admin, userId)
      Object.assign(record, await watchedBurst(service, count, variant === 'hold-burst' ? 201 : 200, async () => variant === 'hold-burst'
        ? await burst(`${service.url}/api/holds`, count, { userId, amount: 2 }, undefined, 'POST')
        : await burst(`${service.url}/api/balance`, count, { userId, amount: -2 })))
      if (variant === 'change-burst') {
        record.failures.push(...burstBooksChecks(before, await books(admin, userId), half))
      } else {
        const after = await holdBooks(admin, userId)
        record.detail.holds = after
        if (after.active !== half || after.activeSum !== count || after.held !== count) {
          record.failures.push(`${after.active} active holds of Σ ${after.activeSum}, held ${after.held}; expected ${half} of Σ ${count}, held ${count}`)
        }
        if (after.balance !== count || after.entries !== before.entries) record.failures.push(`a hold moved money: balance ${after.balance}, ${after.entries - before.entries} new journal entries`)
      }
      return admin
    }
    const userId = ctx.fixtures.holdsHotUser
    if (variant === 'hot-change') {
      const { figures, detail, failures } = await watchedHotLoad(service, admin, userId, options)
      Object.assign(record, { figures, detail, failures })
    } else {
      const before = await holdBooks(admin, userId)
      const watch = await watchProcess(service.pid)
      const outcome = await holdCaptureLoad(service.url, userId, options.connections, options.featureSeconds)
      const usage = await watch.stop()
      await settledJournalCount(admin)
      const after = await holdBooks(admin, userId)
      const captured = after.captured - before.captured
      const entries = after.captureEntries - before.captureEntries
      record.figures = { ...loadFigures(outcome, outcome.responses, usage), pairsPerSec: outcome.pairsPerSec }
      record.detail = { ...outcome, captured, captureEntries: entries, holds: after }
      record.failures = loadChecks(outcome)
      if (entries !== captured) record.failures.push(`${entries} capture entries for ${captured} captured holds`)
      // 2xx answers are holds and captures: as many, plus at most one hold per connection whose capture was never
      // sent; a capture still in flight when the load stopped may commit after it counted (at most one per connection).
      const c = options.connections
      if (captured < (outcome.ok2xx - c) / 2 || captured > outcome.ok2xx / 2 + c) record.failures.push(`${captured} holds captured for ${outcome.ok2xx} × 2xx (hold, capture) answers`)
      if (after.held !== after.activeSum) record.failures.push(`held ${after.held} ≠ Σ active holds ${after.activeSum}`)
    }
    return admin
  }

  // events: the side of this variant's EVENTS value, booted by startEventsServices for this repetition.
  const side = ctx.events.find((s) => variant?.endsWith(`-events-${s.mode}`) === true)!
  const server = side.server!
  let journalled: number
  let eventsBefore: number
  if (variant?.startsWith('burst-') === true) {
    await resetBalance(side.admin, BURST_USER, count)
    const before = await books(side.admin, BURST_USER)
    eventsBefore = await eventCount(side.admin)
    Object.assign(record, await watchedBurst(server, count, 200, async () => await burst(`${server.url}/api/balance`, count, { userId: BURST_USER, amount: -2 })))
    const after = await books(side.admin, BURST_USER)
    record.failures.push(...burstBooksChecks(before, after, half))
    journalled = after.entries - before.entries
  } else {
    eventsBefore = await eventCount(side.admin)
    const { journalled: written, ...measured } = await watchedHotLoad(server, side.admin, side.hotUser, options)
    Object.assign(record, measured)
    journalled = written
  }
  // With EVENTS=on every journal entry wrote its event in its transaction; with off, none.
  const events = await eventCount(side.admin) - eventsBefore
  record.detail.events = events
  const expected = side.mode === 'on' ? journalled : 0
  if (events !== expected) record.failures.push(`${events} events written for ${journalled} journal entries with EVENTS=${side.mode}`)
  return side.admin
}
