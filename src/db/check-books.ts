import { QueryTypes, Transaction, type Sequelize } from 'sequelize'
import { MAX_BALANCE, MIN_BALANCE } from '../domain/money.js'

/**
 * The books checker behind `npm run verify` (src/verify.ts), exported so tests run it after their scenarios.
 * Every check is one query for the rows that break a rule; all run in one REPEATABLE READ read-only transaction,
 * so a live database is judged on one consistent snapshot while writes go on.
 */
export interface BooksViolation {
  check: string
  description: string
  /** How many rows break the rule. */
  count: number
  /** The first few of them, to start an investigation from. */
  samples: Array<Record<string, unknown>>
}

export interface BooksReport {
  ok: boolean
  users: number
  entries: number
  transfers: number
  idempotencyKeys: number
  holds: number
  violations: BooksViolation[]
}

/** Rows shown per broken rule; the count says how many there are in all. */
export const SAMPLE_LIMIT = 10

/** One user's books: the stored balance, Σ of its journal amounts, and how many entries it has. */
export interface UserBooks { balance: number, journalSum: number, entries: number }
export type UserBooksRow = { balance: string, journal_sum: string, entries: string }

/** One user's books in one query; binds [userId]. Shared by tests and the bench. */
export const USER_BOOKS_SQL = `
  SELECT u.balance, COALESCE(SUM(j.amount), 0) AS journal_sum, COUNT(j.id) AS entries
  FROM users u LEFT JOIN journal_entries j ON j.user_id = u.id
  WHERE u.id = $1 GROUP BY u.balance`

export function toUserBooks (row: UserBooksRow | undefined, userId: number): UserBooks {
  if (row === undefined) throw new Error(`no user ${userId}`)
  return { balance: Number(row.balance), journalSum: Number(row.journal_sum), entries: Number(row.entries) }
}
/** A verify may read the whole journal: longer than a request's statement timeout, but still bounded. */
const CHECK_STATEMENT_TIMEOUT = '10min'

interface Check {
  check: string
  description: string
  /** Returns the breaking rows (at most SAMPLE_LIMIT) with `violations` = their total count; replacements :min, :max, :limit (numbers, so inlined safely). */
  sql: string
}

const CHECKS: Check[] = [
  {
    check: 'balance-equals-journal',
    description: 'a user\'s balance differs from the sum of its journal amounts',
    sql: `
      SELECT u.id AS user_id, u.balance, COALESCE(s.total, 0) AS journal_sum, count(*) OVER () AS violations
      FROM users u LEFT JOIN (SELECT user_id, sum(amount) AS total FROM journal_entries GROUP BY user_id) s ON s.user_id = u.id
      WHERE u.balance <> COALESCE(s.total, 0)
      ORDER BY u.id LIMIT :limit`,
  },
  {
    check: 'balance-in-bounds',
    description: 'a balance is negative (or above the maximum)',
    sql: `
      SELECT id AS user_id, balance, count(*) OVER () AS violations
      FROM users WHERE balance < :min OR balance > :max
      ORDER BY id LIMIT :limit`,
  },
  {
    check: 'running-balance',
    description: 'an entry\'s balance_after is not the running sum of its user\'s amounts in id (= commit) order',
    sql: `
      SELECT id AS entry_id, user_id, balance_after, running_sum, count(*) OVER () AS violations
      FROM (SELECT id, user_id, balance_after, sum(amount) OVER (PARTITION BY user_id ORDER BY id) AS running_sum
            FROM journal_entries) j
      WHERE balance_after <> running_sum
      ORDER BY id LIMIT :limit`,
  },
  {
    check: 'transfer-pairs',
    description: 'a transfer does not have exactly one negative transfer-out and one positive transfer-in leg, on two users, summing to zero',
    sql: `
      SELECT transfer_id, count(*) AS legs, sum(amount) AS amount_sum, count(*) OVER () AS violations
      FROM journal_entries WHERE transfer_id IS NOT NULL
      GROUP BY transfer_id
      HAVING count(*) <> 2 OR sum(amount) <> 0 OR count(DISTINCT user_id) <> 2
        OR count(*) FILTER (WHERE kind = 'transfer-out' AND amount < 0) <> 1
        OR count(*) FILTER (WHERE kind = 'transfer-in' AND amount > 0) <> 1
      ORDER BY transfer_id LIMIT :limit`,
  },
  {
    check: 'transfer-kinds',
    description: 'a transfer leg without a transfer_id, or a transfer_id on an entry that is not a transfer leg',
    sql: `
      SELECT id AS entry_id, kind, transfer_id, count(*) OVER () AS violations
      FROM journal_entries
      WHERE (kind IN ('transfer-in', 'transfer-out')) <> (transfer_id IS NOT NULL)
      ORDER BY id LIMIT :limit`,
  },
  {
    check: 'idempotent-results',
    description: 'a stored idempotent result has no outcome, or does not point at exactly the journal entries its outcome wrote (tagged with its key)',
    sql: `
      WITH k AS (
        SELECT key, result, entry_ids,
          CASE
            WHEN result IS NULL THEN NULL
            WHEN result->>'outcome' <> 'applied' THEN '{}'::BIGINT[]
            WHEN result->>'operation' = 'transfer' THEN ARRAY[(result->>'fromEntryId')::BIGINT, (result->>'toEntryId')::BIGINT]
            WHEN result->>'operation' = 'change' THEN ARRAY[(result->>'entryId')::BIGINT]
            WHEN result->>'operation' = 'create-user' AND (result->>'balance')::NUMERIC > 0 THEN ARRAY[(result->>'entryId')::BIGINT]
            WHEN result->>'operation' = 'create-user' THEN '{}'::BIGINT[]
            WHEN result->>'operation' IN ('hold', 'void') THEN '{}'::BIGINT[]
            WHEN result->>'operation' = 'capture' AND result->>'toEntryId' IS NOT NULL
              THEN ARRAY[(result->>'entryId')::BIGINT, (result->>'toEntryId')::BIGINT]
            WHEN result->>'operation' = 'capture' THEN ARRAY[(result->>'entryId')::BIGINT]
            WHEN result->>'operation' = 'bulk' THEN ARRAY(SELECT (r.item->>'entryId')::BIGINT
              FROM jsonb_array_elements(result->'results') WITH ORDINALITY AS r(item, n) ORDER BY r.n)
          END AS expected_ids
        FROM idempotency_keys
      )
      SELECT k.key, k.result, k.entry_ids, count(*) OVER () AS violations
      FROM k
      WHERE k.expected_ids IS NULL
         OR array_position(k.expected_ids, NULL) IS NOT NULL
         OR k.entry_ids <> k.expected_ids
         OR (SELECT count(*) FROM journal_entries e WHERE e.id = ANY (k.entry_ids) AND e.idempotency_key = k.key)
            <> cardinality(k.entry_ids)
      ORDER BY k.key LIMIT :limit`,
  },
  {
    check: 'held-equals-active-holds',
    description: 'a user\'s held is not the sum of its active holds, or exceeds its balance (available < 0)',
    sql: `
      SELECT u.id AS user_id, u.balance, u.held, COALESCE(s.total, 0) AS active_sum, count(*) OVER () AS violations
      FROM users u LEFT JOIN (SELECT user_id, sum(amount) AS total FROM holds WHERE status = 'active' GROUP BY user_id) s ON s.user_id = u.id
      WHERE u.held <> COALESCE(s.total, 0) OR u.held > u.balance OR u.held < 0
      ORDER BY u.id LIMIT :limit`,
  },
  {
    check: 'holds-expiry-bound',
    description: 'a user\'s holds_expire_at is not a lower bound of its active holds\' expiry (an expired hold could be counted as held)',
    sql: `
      SELECT u.id AS user_id, u.holds_expire_at, s.earliest, count(*) OVER () AS violations
      FROM users u JOIN (SELECT user_id, min(expires_at) AS earliest FROM holds WHERE status = 'active' GROUP BY user_id) s ON s.user_id = u.id
      WHERE u.holds_expire_at IS NULL OR u.holds_expire_at > s.earliest
      ORDER BY u.id LIMIT :limit`,
  },
  {
    check: 'hold-captures',
    description: 'a hold is captured beyond its amount, or its journal entries do not match its state (a captured hold: one capture entry of ' +
      '−captured on its holder, and one capture-in of +captured on its payee when it has one; any other hold: no entry)',
    sql: `
      SELECT h.id AS hold_id, h.status, h.amount, h.captured, h.to_user_id, e.entries, count(*) OVER () AS violations
      FROM holds h
      LEFT JOIN LATERAL (
        SELECT count(*) AS entries,
               count(*) FILTER (WHERE j.kind = 'capture' AND j.user_id = h.user_id AND j.amount = -h.captured) AS out_legs,
               count(*) FILTER (WHERE j.kind = 'capture-in' AND j.user_id = h.to_user_id AND j.amount = h.captured) AS in_legs
        FROM journal_entries j WHERE j.hold_id = h.id
      ) e ON true
      WHERE h.captured > h.amount
         OR (h.status = 'captured' AND (e.out_legs <> 1 OR e.in_legs <> (CASE WHEN h.to_user_id IS NULL THEN 0 ELSE 1 END)
             OR e.entries <> e.out_legs + e.in_legs))
         OR (h.status <> 'captured' AND e.entries <> 0)
      ORDER BY h.id LIMIT :limit`,
  },
]

const TOTALS_SQL = `
  SELECT (SELECT count(*) FROM users) AS users,
         (SELECT count(*) FROM journal_entries) AS entries,
         (SELECT count(DISTINCT transfer_id) FROM journal_entries WHERE transfer_id IS NOT NULL) AS transfers,
         (SELECT count(*) FROM idempotency_keys) AS keys,
         (SELECT count(*) FROM holds) AS holds`

export async function checkBooks (sequelize: Sequelize): Promise<BooksReport> {
  return await sequelize.transaction({ isolationLevel: Transaction.ISOLATION_LEVELS.REPEATABLE_READ, readOnly: true }, async (transaction) => {
    await sequelize.query(`SET LOCAL statement_timeout = '${CHECK_STATEMENT_TIMEOUT}'; SET LOCAL idle_in_transaction_session_timeout = 0`, { transaction })
    const violations: BooksViolation[] = []
    for (const { check, description, sql } of CHECKS) {
      const rows = await sequelize.query<Record<string, unknown>>(sql, { replacements: { min: MIN_BALANCE, max: MAX_BALANCE, limit: SAMPLE_LIMIT }, type: QueryTypes.SELECT, transaction })
      if (rows.length === 0) continue
      violations.push({ check, description, count: Number(rows[0]?.violations), samples: rows.map(({ violations: _count, ...row }) => row) })
    }
    const [totals] = await sequelize.query<Record<string, string>>(TOTALS_SQL, { type: QueryTypes.SELECT, transaction })
    return {
      ok: violations.length === 0,
      users: Number(totals?.users),
      entries: Number(totals?.entries),
      transfers: Number(totals?.transfers),
      idempotencyKeys: Number(totals?.keys),
      holds: Number(totals?.holds),
      violations,
    }
  })
}

/** The report as the lines `npm run verify` prints. */
export function formatReport (report: BooksReport): string {
  const lines = [
    `books: ${report.users} users, ${report.entries} journal entries, ${report.transfers} transfers, ${report.holds} holds, ${report.idempotencyKeys} idempotency keys`,
  ]
  for (const { check, description, count, samples } of report.violations) {
    lines.push(`VIOLATION ${check}: ${count} × ${description}`)
    for (const sample of samples) lines.push(`  ${JSON.stringify(sample)}`)
  }
  lines.push(report.ok ? `OK: all ${CHECKS.length} checks pass` : `FAILED: ${report.violations.length} of ${CHECKS.length} checks`)
  return lines.join('\n')
}
