import { createHash } from 'node:crypto'
import { DomainError, IdempotencyKeyReusedError } from '../domain/errors.js'
import type { IdempotencyClaim, Keyed } from '../strategies/types.js'
import type { KeyStoreBudget } from './key-store-budget.js'

/**
 * Idempotency keys, the service side. The database side is db/migrations/0004:
 * the key row is claimed, the write done and its outcome stored in ONE transaction, by one function call.
 *
 * Here: what identifies a request (the fingerprint), how long a key lives, and how a stored outcome becomes the
 * answer again. Only what passed validation is fingerprinted, so a 400 never reaches a key and is never kept.
 */

/** Expired keys one write may delete (oldest first, skipping locked rows): bounded work, no background job. */
export const IDEMPOTENCY_PURGE_LIMIT = 100

/** The writes that take a key. Part of the fingerprint, so one key sent to two routes is a reuse (422). */
export type Operation = 'change' | 'transfer' | 'create-user' | 'hold' | 'capture' | 'void' | 'bulk'

/** An answer and whether it was replayed from a key's stored outcome (the route adds `Idempotent-Replayed: true`). */
export interface Answer<T> {
  value: T
  replayed: boolean
}

/**
 * sha256 of the operation and the validated request's values in a fixed order, so `{"a":1,"b":2}` and
 * `{"b":2,"a":1}` (and an omitted default) are the same request.
 */
export function fingerprint (operation: Operation, values: ReadonlyArray<number | string | null>): string {
  return createHash('sha256').update(JSON.stringify([operation, ...values])).digest('hex')
}

/**
 * Metadata as a fingerprint value: its entries sorted by key, so the same object written in another order is the same
 * request. Appended only when present, so a request without metadata keeps the fingerprint it always had.
 */
export function metadataValues (metadata: Record<string, string> | undefined): string[] {
  if (metadata === undefined) return []
  return [JSON.stringify(Object.entries(metadata).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))]
}

export class Idempotency {
  private readonly ttlSeconds: number

  constructor (ttlHours: number, private readonly budget?: KeyStoreBudget) {
    this.ttlSeconds = ttlHours * 3600
  }

  /** Before a keyed write: refused with OVERLOADED when the key table is at its bound (IDEMPOTENCY_MAX_KEYS). */
  async admit (): Promise<void> {
    await this.budget?.admit()
  }

  claim (key: string, operation: Operation, values: ReadonlyArray<number | string | null>): IdempotencyClaim {
    return { key, fingerprint: fingerprint(operation, values), ttlSeconds: this.ttlSeconds, purgeLimit: IDEMPOTENCY_PURGE_LIMIT }
  }

  /**
   * Renders a keyed outcome the same way whether it ran now or is replayed, so a replay is the first answer again.
   * `render` throws the outcome's domain error for refusals; a replayed one is marked so the error handler says so.
   */
  settle<O, T> (keyed: Keyed<O>, render: (outcome: O) => T): Answer<T> {
    if (keyed.idempotency === 'reused') throw new IdempotencyKeyReusedError()
    const replayed = keyed.idempotency === 'replayed'
    try {
      return { value: render(keyed.outcome), replayed }
    } catch (error) {
      if (error instanceof DomainError) error.replayed = replayed
      throw error
    }
  }
}
