import pg from 'pg'

/**
 * A bounded HTTP load for fault-injection tests: `workers` loops, each sending one request at a time over real
 * loopback sockets until `stop()` says so or `maxRequests` is reached, every request with a client timeout.
 * It sorts what came back into acknowledged (2xx), refused (4xx with a code), unavailable (503 DB_UNAVAILABLE) and
 * violations (any other 5xx, a 4xx without a code, a timeout, a connection error).
 */
export interface Reply {
  status: number
  body: Record<string, unknown>
  headers: Headers
  ms: number
}

export type Outcome = { ok: true, reply: Reply, ms: number } | { ok: false, error: string, ms: number }

export async function send (base: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}, timeoutMs = 15_000): Promise<Outcome> {
  const started = performance.now()
  try {
    const response = await fetch(new URL(path, base), {
      method,
      headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(timeoutMs),
    })
    const text = await response.text()
    let parsed: Record<string, unknown> = {}
    try { parsed = JSON.parse(text) as Record<string, unknown> } catch { parsed = { unparsed: text } }
    const ms = performance.now() - started
    return { ok: true, ms, reply: { status: response.status, body: parsed, headers: response.headers, ms } }
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause
    const name = error instanceof Error ? (error.name === 'TimeoutError' ? 'CLIENT_TIMEOUT' : cause?.code ?? error.message) : String(error)
    return { ok: false, error: name, ms: performance.now() - started }
  }
}

export interface Tally<T> {
  acknowledged: Array<{ request: T, reply: Reply }>
  refused: Array<{ request: T, reply: Reply }>
  unavailable: Array<{ request: T, reply: Reply }>
  violations: string[]
  statuses: Record<string, number>
  maxMs: number
}

export function emptyTally<T> (): Tally<T> {
  return { acknowledged: [], refused: [], unavailable: [], violations: [], statuses: {}, maxMs: 0 }
}

/** Files one outcome; `label` names the request in a violation. */
export function record<T> (tally: Tally<T>, request: T, outcome: Outcome, label: string): void {
  const key = outcome.ok ? String(outcome.reply.status) : outcome.error
  tally.statuses[key] = (tally.statuses[key] ?? 0) + 1
  tally.maxMs = Math.max(tally.maxMs, outcome.ms)
  if (!outcome.ok) {
    tally.violations.push(`${label}: ${outcome.error} after ${Math.round(outcome.ms)} ms`)
    return
  }
  const { reply } = outcome
  if (reply.status >= 200 && reply.status < 300) tally.acknowledged.push({ request, reply })
  else if (reply.status === 503 && reply.body.code === 'DB_UNAVAILABLE') tally.unavailable.push({ request, reply })
  else if (reply.status >= 400 && reply.status < 500 && typeof reply.body.code === 'string') tally.refused.push({ request, reply })
  else tally.violations.push(`${label}: ${reply.status} ${JSON.stringify(reply.body).slice(0, 300)}`)
}

export interface LoadOptions<T> {
  workers: number
  maxRequests: number
  stop: () => boolean
  next: (index: number) => T
  perform: (request: T) => Promise<Outcome>
  label: (request: T) => string
}

export async function runLoad<T> (options: LoadOptions<T>): Promise<Tally<T>> {
  const tally = emptyTally<T>()
  let issued = 0
  await Promise.all(Array.from({ length: options.workers }, async () => {
    while (!options.stop() && issued < options.maxRequests) {
      const request = options.next(issued)
      issued += 1
      record(tally, request, await options.perform(request), options.label(request))
    }
  }))
  return tally
}

/** Polls `check` every `intervalMs` until it is true or `timeoutMs` passes; returns the time it took, or -1. */
export async function waitFor (check: () => Promise<boolean>, timeoutMs: number, intervalMs = 100): Promise<number> {
  const started = Date.now()
  while (Date.now() - started < timeoutMs) {
    if (await check()) return Date.now() - started
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
  return -1
}

export async function sleep (ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms))
}

/**
 * Every acknowledged PATCH has exactly one journal entry, its own (the entryId it was told, with its user and
 * amount); the journal holds no more entries than the acknowledged changes plus the 503s (which may or may not
 * have committed), and each user's balance is the sum of its journal.
 */
export async function checkChanges (client: pg.Client, acknowledged: Array<{ userId: number, amount: number, entryId: number }>, unavailable: number, entriesBefore: number): Promise<string[]> {
  const problems: string[] = []
  const ids = acknowledged.map((change) => change.entryId)
  if (new Set(ids).size !== ids.length) problems.push('two acknowledged changes share a journal entry')
  const rows = (await client.query<{ id: string, user_id: string, amount: string }>('SELECT id, user_id, amount FROM journal_entries WHERE id = ANY($1::bigint[])', [ids])).rows
  const found = new Map(rows.map((row) => [Number(row.id), row]))
  for (const change of acknowledged) {
    const row = found.get(change.entryId)
    if (row === undefined) problems.push(`acknowledged entry ${change.entryId} is missing from the journal`)
    else if (Number(row.user_id) !== change.userId || Number(row.amount) !== change.amount) problems.push(`entry ${change.entryId} is not the acknowledged change`)
  }
  const total = Number((await client.query<{ n: string }>('SELECT count(*) AS n FROM journal_entries')).rows[0]?.n)
  const added = total - entriesBefore
  if (added < acknowledged.length || added > acknowledged.length + unavailable) {
    problems.push(`journal grew by ${added}; acknowledged ${acknowledged.length}, ambiguous (503) ${unavailable}`)
  }
  const unbalanced = await client.query(`SELECT u.id FROM users u LEFT JOIN journal_entries j ON j.user_id = u.id
    GROUP BY u.id, u.balance HAVING u.balance <> coalesce(sum(j.amount), 0)`)
  if ((unbalanced.rowCount ?? 0) > 0) problems.push('a balance differs from the sum of its journal')
  return problems
}
