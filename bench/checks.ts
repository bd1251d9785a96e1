import type { Books } from './database.js'
import type { BurstOutcome, LoadOutcome } from './load.js'
import type { BatchStats } from './metrics.js'
import type { ProcessUsage } from '../src/tooling/processes.js'

/** A burst of `count` on a user holding `count`, each taking 2: exactly half `ok` (200, or 201 for holds), half 409 INSUFFICIENT_FUNDS. */
export function burstChecks (outcome: BurstOutcome, count: number, ok = 200): string[] {
  const failures: string[] = []
  const half = count / 2
  if (Object.keys(outcome.errors).length > 0) failures.push(`connection errors ${JSON.stringify(outcome.errors)}`)
  const statuses = JSON.stringify(outcome.statuses)
  if (statuses !== JSON.stringify({ [ok]: half, 409: half })) failures.push(`statuses ${statuses}, expected ${half} × ${ok} and ${half} × 409`)
  const codes = JSON.stringify(outcome.codes)
  if (codes !== JSON.stringify({ INSUFFICIENT_FUNDS: half })) failures.push(`codes ${codes}, expected ${half} × INSUFFICIENT_FUNDS`)
  return failures
}

/** The books of the burst user after a change burst that emptied it: balance 0, one entry per success, Σ journal = balance. */
export function burstBooksChecks (before: Books, after: Books, half: number): string[] {
  const failures: string[] = []
  if (after.balance !== 0) failures.push(`final balance ${after.balance}, expected 0`)
  if (after.journalSum !== after.balance) failures.push(`Σ journal ${after.journalSum} ≠ balance ${after.balance}`)
  if (after.entries - before.entries !== half) failures.push(`${after.entries - before.entries} new journal entries, expected ${half}`)
  return failures
}

export function loadChecks (outcome: LoadOutcome): string[] {
  const failures: string[] = []
  if (outcome.errors > 0) failures.push(`${outcome.errors} connection errors`)
  if (outcome.timeouts > 0) failures.push(`${outcome.timeouts} timeouts`)
  if (outcome.non2xx > 0) failures.push(`${outcome.non2xx} non-2xx responses`)
  if (outcome.ok2xx === 0) failures.push('no 2xx response at all')
  return failures
}

/** Requests still in flight when autocannon stopped may commit after it counted: at most one per connection. */
export function journalledChecks (written: number, ok2xx: number, connections: number): string[] {
  return written < ok2xx || written > ok2xx + connections ? [`${written} journal entries for ${ok2xx} × 2xx`] : []
}

export function burstFigures (outcome: BurstOutcome, usage?: ProcessUsage): Record<string, number> {
  return {
    wallMs: outcome.wallMs,
    p50Ms: outcome.latencyMs.p50,
    p99Ms: outcome.latencyMs.p99,
    maxMs: outcome.latencyMs.max,
    ...(usage === undefined ? {} : { peakRssMb: usage.peakRssMb, cpuMs: usage.cpuMs }),
    ...(outcome.attempts === undefined ? {} : { attempts: outcome.attempts.total, retriedCalls: outcome.attempts.retried, maxAttempts: outcome.attempts.max }),
  }
}

export function loadFigures (outcome: { reqPerSec: number, p50Ms: number, p99Ms: number }, responses: number, usage?: ProcessUsage): Record<string, number> {
  return {
    reqPerSec: outcome.reqPerSec,
    p50Ms: outcome.p50Ms,
    p99Ms: outcome.p99Ms,
    ...(usage === undefined ? {} : { peakRssMb: usage.peakRssMb, cpuMs: usage.cpuMs, cpuUsPerRequest: responses > 0 ? (usage.cpuMs * 1000) / responses : 0 }),
  }
}

export function batchFigures (stats: BatchStats | undefined): Record<string, number> {
  if (stats === undefined || stats.batches === 0) return {}
  return { batches: stats.batches, batchedChanges: stats.changes, batchMean: stats.mean, batchP50: stats.p50, batchP90: stats.p90, batchMax: stats.max }
}
