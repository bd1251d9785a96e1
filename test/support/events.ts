import type { FastifyInstance } from 'fastify'
import { sql } from '../helper.js'
import { request } from './ledger.js'
import type { BalanceEvent } from '../../src/events/event.js'
import { rebuildBalances, UNMATCHED_JOURNAL_EVENTS_SQL } from '../../src/events/rebuild.js'

/** Helpers of the event tests: read the HTTP feed to its end, rebuild balances, compare with the database. */

export interface Page { items: BalanceEvent[], nextCursor: string }

export async function feedPage (app: FastifyInstance, after?: string, limit = 1000): Promise<Page> {
  const query = new URLSearchParams({ limit: String(limit), ...(after === undefined ? {} : { after }) })
  const res = await request(app, 'GET', `/api/events?${query.toString()}`)
  if (res.statusCode !== 200) throw new Error(`GET /api/events answered ${res.statusCode}: ${res.body}`)
  return res.json()
}

/** The number of events in the database (committed), read directly. */
export async function eventCount (app: FastifyInstance): Promise<number> {
  return Number((await sql<{ n: string }>(app, 'SELECT count(*) AS n FROM events'))[0]?.n)
}

/**
 * Follows the feed from `after` until it has served every event the database holds (the feed may lag behind a
 * transaction anywhere on the server, so it polls, bounded by `deadlineMs`).
 */
export async function readWholeFeed (app: FastifyInstance, from: { cursor: string, read: number } | undefined = undefined, deadlineMs = 30_000): Promise<{ events: BalanceEvent[], cursor: string }> {
  const events: BalanceEvent[] = []
  const total = await eventCount(app) - (from?.read ?? 0)
  const after = from?.cursor
  const deadline = Date.now() + deadlineMs
  let cursor = after
  while (events.length < total) {
    const page = await feedPage(app, cursor)
    events.push(...page.items)
    cursor = page.nextCursor
    if (page.items.length === 0) {
      if (Date.now() > deadline) throw new Error(`the feed served ${events.length} of ${total} events in ${deadlineMs} ms`)
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  }
  return { events, cursor: cursor ?? '' }
}

export interface Rebuild {
  /** userId → balance recomputed from the events alone (Σ amounts from 0). */
  balances: Map<number, number>
  /** Everything that is wrong: a duplicate event, a seq out of order or missing, a balanceAfter that does not chain. */
  problems: string[]
  events: number
}

/** Rebuilds balances from events in the order given (src/events/rebuild.ts: per user they must come in seq order 1, 2, 3, …). */
export function rebuild (events: BalanceEvent[]): Rebuild {
  const rebuilt = rebuildBalances(events)
  return { balances: new Map([...rebuilt.users].map(([id, user]) => [id, user.balance])), problems: rebuilt.problems, events: rebuilt.events }
}

/** Users whose rebuilt balance differs from the database's (users without events must have 0). */
export async function mismatches (app: FastifyInstance, balances: Map<number, number>): Promise<string[]> {
  const rows = await sql<{ id: string, balance: string }>(app, 'SELECT id, balance FROM users ORDER BY id')
  const wrong: string[] = []
  for (const row of rows) {
    const rebuilt = balances.get(Number(row.id)) ?? 0
    if (rebuilt !== Number(row.balance)) wrong.push(`user ${row.id}: database ${row.balance}, events ${rebuilt}`)
  }
  return wrong
}

/** Journal entries without their event, and events (but baselines and hold steps) without their entry: 0 when they agree one to one. */
export async function journalWithoutEvent (app: FastifyInstance): Promise<number> {
  return Number((await sql<{ n: string }>(app, UNMATCHED_JOURNAL_EVENTS_SQL))[0]?.n)
}
