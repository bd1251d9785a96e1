import type { StrategyName } from '../src/config.js'
import type { Pooler } from '../deploy/local/topology.js'

/**
 * The soak's options and its JSON summary: one place for the soak (reliability/soak.ts) that writes the summary and
 * the report writer (reliability/reliability-report.ts) that reads it, so neither imports the other's module.
 */
export interface SoakOptions {
  durationMs: number
  /** Users created for the soak (user 1, the seed, takes part too). */
  users: number
  initialBalance: number
  clients: number
  readers: number
  instances: number
  strategy: StrategyName
  /** pg_terminate_backend on every service connection this often; 0 = never. */
  terminateEveryMs: number
  /** SIGKILL one instance (round robin) and start it again this often; 0 = never. */
  killInstanceEveryMs: number
  /** Run on the HA topology (deploy/local/topology.ts) instead of one throwaway database. */
  ha?: HaOptions
  /** Events to JetStream (reliability/soak-events.ts): a nats-server of the soak's own, the exactness checks after the load. */
  events?: boolean
  /** The server: defaults to the built one, node dist/src/server.js. */
  serverCommand: string[]
  /** Extra environment for the server processes (a test passes its TypeScript loader's settings). */
  serverEnv?: Record<string, string>
  /** Where the JSON summary goes (besides stdout). */
  out?: string
  /** Also write reliability/REPORT.md and the README section from this run. */
  report: boolean
  /** The command line, for the report. */
  command: string
  log: (line: string) => void
}

export interface HaOptions {
  /** PgBouncer in front of HAProxy ('transaction' needs the service's PgBouncer support), or straight to HAProxy. */
  pooler: Pooler
  /** synchronous_mode_strict: with one node left, commits wait for a standby. */
  strict: boolean
  /** SIGKILL the primary node (Patroni + postmaster) this often, then start it again as a standby; 0 = never. */
  killPrimaryEveryMs: number
  /** Stop killing after this many kills; 0 = no limit. */
  maxPrimaryKills: number
}

/** One primary-node kill and what the clients saw. */
export interface FailoverRecord {
  killed: string
  newPrimary: string
  /** Seconds into the load when the node was killed. */
  atS: number
  /** Kill → a new primary answers `pg_is_in_recovery() = false` through HAProxy. */
  failoverS: number
  /** Kill → the first acknowledged write sent after the outage began (after the first 503 / connection error). */
  serviceRecoveredS: number | null
  /** 503 answers and connection errors within OUTAGE_S seconds of the kill. */
  unavailable503: number
  connectionErrors: number
  /** First to last 503 / connection error within OUTAGE_S seconds of the kill, seconds. */
  windowS: number
  /** 503s and connection errors later than that, until the next kill or the end (not the failover's). */
  laterUnavailable: number
  /** Kill → the killed node is back as a synchronous standby (null: not yet when the next kill or the end came). */
  standbyBackS: number | null
  /** --events: kill → the events publisher moved its cursor again on the new primary (null: not seen). */
  eventsResumedS?: number | null
  /** --events: the lease went to another instance than the one holding it at the kill. */
  eventsHolderChanged?: boolean | null
}

/** One rebuild of every balance from one source alone (src/events/consumer.ts's report), against the database. */
export interface RebuildCheck {
  /** Distinct events read. */
  events: number
  duplicates: number
  users: number
  /** Users whose last seq the rebuild reached, compared; `behind`: users the source stops short of. */
  checked: number
  behind: number
  /** Seq gaps, order and balanceAfter chain (the first 20). */
  problems: string[]
  /** Rebuilt balance ≠ the database's (the first 20). */
  mismatches: string[]
}

/** --events: the stream and the feed against the final database. */
export interface EventsSummary {
  /** Events in the database (the final primary). */
  events: number
  streamMessages: number
  feedEvents: number
  /** The lease row's count of events marked published (a publish whose mark a failover lost is not counted). */
  published: number
  /** End of the load → the publisher's cursor past every event. */
  drainS: number
  pendingAfterDrain: number
  /** Σ events_publish_duplicates_total of the instances: publishes JetStream dropped as duplicates (null: not read). */
  publishDuplicates: number | null
  fromStream: RebuildCheck
  fromFeed: RebuildCheck
  /** Stream events the database does not hold as published: what an event published from a primary, then lost with it, leaves. */
  streamNotInDatabase: number
  databaseNotInStream: number
  feedNotInDatabase: number
  databaseNotInFeed: number
  /** Journal entries without their event plus events without their journal entry (baselines and hold steps aside). */
  unmatchedJournal: number
}

export type Kind = 'transfer' | 'deposit' | 'withdrawal'

export interface SoakSummary {
  kind: 'soak'
  ok: boolean
  command: string
  startedAt: string
  finishedAt: string
  durationS: number
  loadS: number
  options: Omit<SoakOptions, 'log' | 'serverCommand' | 'serverEnv' | 'command'>
  database: 'embedded' | 'external' | 'ha'
  /** The HA topology's failovers (with --ha). */
  ha?: { pooler: Pooler, strict: boolean, failovers: FailoverRecord[], finalPrimary: string, checkerReconnects: number }
  operations: {
    logical: number
    byKind: Record<Kind, number>
    acknowledged: number
    refused: number
    ambiguousAttempts: number
    resolvedByRetry: number
    replayedAfterAmbiguity: number
    unknownReconciled: number
    perSecond: number
  }
  reads: { total: number, negativeSeen: number, unavailable: number, errors: number }
  http: { requests: number, byStatus: Record<string, number>, errors: Record<string, number>, fiveHundreds: { '503': number, other: number } }
  faults: { terminateRounds: number, backendsTerminated: number, instanceKills: number, primaryKills: number, unexpectedInstanceExits: number, bootFailuresRetried: number }
  snapshots: { checks: number, mismatches: number }
  books: { users: number, entries: number, transfers: number, idempotencyKeys: number, checkerOk: boolean }
  /** Acknowledged operations whose journal rows (user, amount, balance after) match the answer the client got. */
  journalMatches: { checked: number, mismatched: number }
  /** With --events. */
  events?: EventsSummary
  totals: { initial: number, expected: number, actual: number }
  violations: string[]
}
