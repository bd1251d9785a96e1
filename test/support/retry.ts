import pg from 'pg'
import { send, sleep, type Outcome } from './load.js'

/**
 * A client that retries with an Idempotency-Key until it gets a real answer (issue 6): shared by the fault tests
 * that kill the service's PostgreSQL connections under load (test/retries.test.ts, test/group-commit.test.ts).
 */
export const CLIENT_TIMEOUT_MS = 30_000
const MAX_ATTEMPTS = 40

export interface Operation {
  key: string
  method: 'PATCH' | 'POST'
  path: string
  body: Record<string, number>
  /** Journal entries the operation writes when it succeeds. */
  legs: number
}

export interface Settled { operation: Operation, final: Outcome, attempts: number, ambiguous: number, replayedAfter503: boolean }

/** A connection of the test's own, named so that the backend killer never picks it. */
export async function connect (url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, application_name: 'fault-injector' })
  await client.connect()
  return client
}

/** Sends an operation until it gets an answer that is not a 503 (or a lost connection), at most MAX_ATTEMPTS times. */
export async function untilAnswered (base: string, operation: Operation): Promise<Settled> {
  let ambiguous = 0
  let outcome: Outcome | undefined
  for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt += 1) {
    outcome = await send(base, operation.method, operation.path, operation.body, { 'idempotency-key': operation.key }, CLIENT_TIMEOUT_MS)
    const unavailable = !outcome.ok || (outcome.reply.status === 503 && outcome.reply.body.code === 'DB_UNAVAILABLE')
    if (!unavailable) {
      const replayedAfter503 = ambiguous > 0 && outcome.ok && outcome.reply.headers.get('idempotent-replayed') === 'true'
      return { operation, final: outcome, attempts: attempt, ambiguous, replayedAfter503 }
    }
    ambiguous += 1
    await sleep(Math.min(500, 20 * attempt))
  }
  return { operation, final: outcome!, attempts: MAX_ATTEMPTS, ambiguous, replayedAfter503: false }
}

/** Terminates the service's backends every `everyMs` until `stop()` says so (at most `rounds` times); counts them. */
export function backendKiller (admin: pg.Client, everyMs: number, rounds: number): { stop: () => Promise<number> } {
  let done = false
  let terminated = 0
  const running = (async () => {
    for (let round = 0; round < rounds && !done; round += 1) {
      await sleep(everyMs)
      const killed = await admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE datname = current_database() AND application_name = 'balance-api' AND pid <> pg_backend_pid()`)
      terminated += killed.rowCount ?? 0
    }
  })()
  return {
    stop: async () => {
      done = true
      await running
      return terminated
    },
  }
}

/** Each operation's journal entries by key: once per leg for a 2xx final answer, never otherwise. Returns the mismatches. */
export async function exactlyOnceMismatches (admin: pg.Client, settled: Settled[]): Promise<string[]> {
  const rows = (await admin.query<{ idempotency_key: string, n: string }>(`SELECT idempotency_key, count(*) AS n FROM journal_entries
    WHERE idempotency_key IS NOT NULL GROUP BY idempotency_key`)).rows
  const entriesByKey = new Map(rows.map((row) => [row.idempotency_key, Number(row.n)]))
  return settled.filter(({ operation, final }) => {
    const expected = final.ok && final.reply.status < 300 ? operation.legs : 0
    return (entriesByKey.get(operation.key) ?? 0) !== expected
  }).map(({ operation, final }) => `${operation.key}: ${entriesByKey.get(operation.key) ?? 0} entries after ${final.ok ? final.reply.status : final.error}`)
}
