import type { BalanceEvent } from './event.js'

/**
 * Balances from events alone. Per user the events must come in seq order 1, 2, 3, … (the feed and the stream both
 * give them so); each one's balanceAfter must equal the rebuilt balance. Anything else is a problem, named.
 */
export interface Rebuilt {
  /** userId → balance (Σ amounts from 0) and the last seq applied. */
  users: Map<number, { balance: number, seq: number }>
  problems: string[]
  /** Distinct events applied. */
  events: number
  /** Events seen more than once (by eventId). */
  duplicates: number
  /** Users whose first event read came after pruned ones: rebuilt from that event's balance before it. */
  startedAfterPruning: number
}

/**
 * `prunedUpTo(userId)`: the user's last seq that may be missing because it was pruned (0: none; Infinity: any, for a
 * stream that lost its oldest messages to max_age). A user's first event may then start at any seq up to it + 1;
 * the rebuild starts from that event's balanceAfter − amount (what the user had before it) and checks the chain from
 * there. A later gap, or a first seq past it, is still a problem.
 */
export function rebuildBalances (events: Iterable<BalanceEvent>, prunedUpTo: (userId: number) => number = () => 0): Rebuilt {
  const users = new Map<number, { balance: number, seq: number }>()
  const seen = new Set<number>()
  const problems: string[] = []
  let duplicates = 0
  let startedAfterPruning = 0
  for (const event of events) {
    if (seen.has(event.eventId)) {
      duplicates += 1
      problems.push(`event ${event.eventId} seen twice`)
      continue
    }
    seen.add(event.eventId)
    let user = users.get(event.userId)
    if (user === undefined && event.seq > 1 && event.seq <= prunedUpTo(event.userId) + 1) {
      user = { balance: event.balanceAfter - event.amount, seq: event.seq - 1 }
      startedAfterPruning += 1
    }
    user ??= { balance: 0, seq: 0 }
    if (event.seq !== user.seq + 1) problems.push(`user ${event.userId}: seq ${event.seq} where ${user.seq + 1} was due`)
    user.balance += event.amount
    user.seq = event.seq
    if (user.balance !== event.balanceAfter) problems.push(`user ${event.userId} seq ${event.seq}: balanceAfter ${event.balanceAfter}, rebuilt ${user.balance}`)
    users.set(event.userId, user)
  }
  return { users, problems, events: seen.size, duplicates, startedAfterPruning }
}

/**
 * One user's row of the database: its balance, the last seq of its events, and the last seq pruned (0: none), read
 * in one snapshot.
 */
export interface DatabaseUser { id: number, balance: number, lastSeq: number, prunedSeq?: number }

/**
 * Rebuilt balances against the database's: a user whose last seq the rebuild reached must have the same balance; a
 * user the rebuild has not caught up with yet (more events in the database) is counted as behind, not as wrong; a
 * user whose every event was pruned (none read, none since) as pruned.
 */
export function compareWithDatabase (rebuilt: Rebuilt, database: DatabaseUser[]): { checked: number, behind: number, pruned: number, mismatches: string[] } {
  const mismatches: string[] = []
  let checked = 0
  let behind = 0
  let pruned = 0
  const known = new Set<number>()
  for (const row of database) {
    known.add(row.id)
    const read = rebuilt.users.get(row.id)
    // Every event of the user was pruned and none came since: nothing is left to check it with.
    if (read === undefined && (row.prunedSeq ?? 0) > 0 && row.lastSeq === row.prunedSeq) { pruned += 1; continue }
    const user = read ?? { balance: 0, seq: 0 }
    if (user.seq < row.lastSeq) { behind += 1; continue }
    checked += 1
    if (user.seq > row.lastSeq) mismatches.push(`user ${row.id}: the events reach seq ${user.seq}, the database ${row.lastSeq}`)
    else if (user.balance !== row.balance) mismatches.push(`user ${row.id}: database ${row.balance}, events ${user.balance}`)
  }
  for (const id of rebuilt.users.keys()) if (!known.has(id)) mismatches.push(`user ${id}: in the events, not in the database`)
  return { checked, behind, pruned, mismatches }
}

/** Every user's balance, last event seq (a pruned one when none is left) and last pruned seq, in one statement (one snapshot). */
export const DATABASE_USERS_SQL = `
  SELECT u.id, u.balance, coalesce((SELECT max(e.seq) FROM events e WHERE e.user_id = u.id), t.seq, 0) AS last_seq,
         coalesce(t.seq, 0) AS pruned_seq
  FROM users u LEFT JOIN events_pruned t ON t.user_id = u.id ORDER BY u.id`

/**
 * Journal entries without their event, and events without the journal entry behind them (baselines and hold steps
 * have none): 0 when journal and events agree one to one, so no event exists for a change that was refused or rolled
 * back. Used by the event tests and the soak's --events.
 */
export const UNMATCHED_JOURNAL_EVENTS_SQL = `
  SELECT count(*) AS n FROM journal_entries j FULL JOIN events e ON e.entry_id = j.id
  WHERE e.id IS NULL OR (j.id IS NULL AND e.type <> 'baseline' AND e.type NOT LIKE 'hold-%')`

/**
 * Events held by a source (the stream, the feed) against the database's own: those the database does not hold (or
 * holds with another user, seq, amount or balance after), and those of the database the source lacks.
 * `database` maps eventId → `user:seq:amount:balanceAfter`, as EVENT_FINGERPRINTS_SQL reads it.
 */
export function diffWithDatabase (events: Iterable<BalanceEvent>, database: Map<number, string>): { notInDatabase: number[], missing: number } {
  const notInDatabase: number[] = []
  const seen = new Set<number>()
  for (const event of events) {
    if (seen.has(event.eventId)) continue
    seen.add(event.eventId)
    if (database.get(event.eventId) !== fingerprint(event)) notInDatabase.push(event.eventId)
  }
  let missing = 0
  for (const id of database.keys()) if (!seen.has(id)) missing += 1
  return { notInDatabase, missing }
}

export function fingerprint (event: Pick<BalanceEvent, 'userId' | 'seq' | 'amount' | 'balanceAfter'>): string {
  return `${event.userId}:${event.seq}:${event.amount}:${event.balanceAfter}`
}

/** Every event's id and fingerprint (see diffWithDatabase), in one statement. */
export const EVENT_FINGERPRINTS_SQL = `
  SELECT id, user_id || ':' || seq || ':' || amount || ':' || balance_after AS fingerprint FROM events`
