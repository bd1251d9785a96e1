import pg from 'pg'
import { BalanceApiError, BalanceClient, BalanceClientError, type BalanceNetworkError, type ChangeBalanceInput, type TransferInput } from '../../src/client/index.js'
import { sleep } from './load.js'

/**
 * Keyed operations retried until they get a real answer, and the backend killer: shared by the fault
 * tests that kill the service's PostgreSQL connections under load (test/system/retries.test.ts, test/system/group-commit.test.ts).
 */
export const CLIENT_TIMEOUT_MS = 30_000
const MAX_ATTEMPTS = 40

export interface Operation {
  key: string
  method: 'PATCH' | 'POST'
  path: '/api/balance' | '/api/transfers'
  body: Record<string, number>
  /** Journal entries the operation writes when it succeeds. */
  legs: number
}

/** `final`: the status of the answer the client ended with, or its network failure reason. */
export interface Settled { operation: Operation, final: number | string, attempts: number, ambiguous: number, replayedAfter503: boolean }

/** A connection of the test's own, named so that the backend killer never picks it. */
export async function connect (url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, application_name: 'fault-injector' })
  await client.connect()
  return client
}

/**
 * Sends operations with the project's client (src/client: the one retry logic — the same Idempotency-Key on every
 * attempt, a 503 or a lost connection retried with backoff, a 4xx never) until each gets a real answer, at most
 * MAX_ATTEMPTS attempts. The client's onAttempt shows each attempt, so the 503s before the answer are counted.
 */
export function retryingClient (base: string): { untilAnswered: (operation: Operation) => Promise<Settled> } {
  const ambiguousByKey = new Map<string, number>()
  const client = new BalanceClient({
    baseUrl: base,
    timeoutMs: CLIENT_TIMEOUT_MS,
    retry: { maxAttempts: MAX_ATTEMPTS, maxElapsedMs: 120_000, baseDelayMs: 20, maxDelayMs: 500 },
    onAttempt: (attempt) => {
      if (attempt.retrying) ambiguousByKey.set(attempt.idempotencyKey!, (ambiguousByKey.get(attempt.idempotencyKey!) ?? 0) + 1)
    },
  })
  return {
    untilAnswered: async (operation) => {
      const options = { idempotencyKey: operation.key }
      let final: number | string
      let attempts: number
      let replayed = false
      try {
        const result = operation.method === 'PATCH'
          ? await client.changeBalance(operation.body as unknown as ChangeBalanceInput, options)
          : await client.transfer(operation.body as unknown as TransferInput, options)
        final = result.status
        attempts = result.attempts
        replayed = result.replayed
      } catch (error) {
        if (!(error instanceof BalanceClientError)) throw error
        final = error instanceof BalanceApiError ? error.status : (error as BalanceNetworkError).reason
        attempts = error.attempts
      }
      const ambiguous = ambiguousByKey.get(operation.key) ?? 0
      return { operation, final, attempts, ambiguous, replayedAfter503: ambiguous > 0 && replayed }
    },
  }
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
    const expected = typeof final === 'number' && final < 300 ? operation.legs : 0
    return (entriesByKey.get(operation.key) ?? 0) !== expected
  }).map(({ operation, final }) => `${operation.key}: ${entriesByKey.get(operation.key) ?? 0} entries after ${final}`)
}
