import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import type { Test } from 'tap'
import { checkBooks } from '../../src/db/check-books.js'
import { sql } from '../helper.js'

/** Helpers shared by the ledger tests (users, transfers, idempotency, transactions, verify). */

export interface JournalRow {
  id: number
  userId: number
  amount: number
  balanceAfter: number
  kind: string
  transferId: string | null
  idempotencyKey: string | null
}

export async function request (app: FastifyInstance, method: 'POST' | 'PATCH' | 'GET', url: string, payload?: unknown, key?: string): Promise<LightMyRequestResponse> {
  return await app.inject({
    method,
    url,
    ...(payload === undefined ? {} : { payload: payload as object }),
    ...(key === undefined ? {} : { headers: { 'idempotency-key': key } }),
  })
}

/** Creates a user through the API and returns its id. */
export async function newUser (app: FastifyInstance, balance = 0): Promise<number> {
  const res = await request(app, 'POST', '/api/users', { balance })
  if (res.statusCode !== 201) throw new Error(`POST /api/users answered ${res.statusCode}: ${res.body}`)
  return (res.json() as { id: number }).id
}

/** A user's journal straight from the database, oldest first (never through the code under test). */
export async function journal (app: FastifyInstance, userId: number): Promise<JournalRow[]> {
  const rows = await sql<Record<string, string | null>>(app, `
    SELECT id, user_id, amount, balance_after, kind, transfer_id, idempotency_key
    FROM journal_entries WHERE user_id = $1 ORDER BY id`, [userId])
  return rows.map((row) => ({
    id: Number(row.id),
    userId: Number(row.user_id),
    amount: Number(row.amount),
    balanceAfter: Number(row.balance_after),
    kind: String(row.kind),
    transferId: row.transfer_id ?? null,
    idempotencyKey: row.idempotency_key ?? null,
  }))
}

export async function balanceOf (app: FastifyInstance, userId: number): Promise<number> {
  const rows = await sql<{ balance: string }>(app, 'SELECT balance FROM users WHERE id = $1', [userId])
  return Number(rows[0]?.balance)
}

/** Everything a write could change, to assert that a refused or bad request changed nothing. */
export async function snapshot (app: FastifyInstance): Promise<unknown> {
  const [state] = await sql(app, `
    SELECT (SELECT json_agg(u ORDER BY u.id) FROM users u) AS users,
           (SELECT count(*) FROM journal_entries) AS entries,
           (SELECT count(*) FROM idempotency_keys) AS keys,
           (SELECT json_agg(h ORDER BY h.id) FROM holds h) AS holds`)
  return state
}

/** `npm run verify`'s checker, on the test's database: must pass after every scenario. */
export async function assertBooksBalance (t: Test, app: FastifyInstance): Promise<void> {
  const report = await checkBooks(app.sequelize)
  t.same(report.violations, [], 'books check passes')
  t.ok(report.ok, 'books ok')
}

export const MAX = Number.MAX_SAFE_INTEGER
