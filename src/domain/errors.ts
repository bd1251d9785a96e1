/**
 * Typed errors the balance service raises. They know nothing of HTTP; src/plugins/error-handler.ts maps
 * each `code` to a status in one table.
 */
export abstract class DomainError extends Error {
  abstract readonly code: string
  /** True when this outcome was not decided now but replayed from an idempotency key's stored outcome. */
  replayed = false
  /** Fields the error body carries besides `{statusCode, code, error, message}` (the figures that explain it). */
  details (): Record<string, unknown> {
    return {}
  }
}

export class UserNotFoundError extends DomainError {
  readonly code = 'USER_NOT_FOUND'
  constructor (readonly userId: number) {
    super(`User ${userId} does not exist`)
  }
}

/** `available` (balance − active holds) decides; a refusal stored before holds existed knows only the balance. */
export class InsufficientFundsError extends DomainError {
  readonly code = 'INSUFFICIENT_FUNDS'
  readonly available: number
  constructor (readonly userId: number, readonly balance: number, readonly amount: number, available?: number) {
    const free = available ?? balance
    super(free === balance
      ? `Insufficient funds: user ${userId} has ${balance}, the change is ${amount}`
      : `Insufficient funds: user ${userId} has ${balance}, of which ${free} is available (the rest is held), the change is ${amount}`)
    this.available = free
  }

  override details (): Record<string, unknown> {
    return { userId: this.userId, balance: this.balance, available: this.available }
  }
}

export class BalanceLimitExceededError extends DomainError {
  readonly code = 'BALANCE_LIMIT_EXCEEDED'
  constructor (readonly userId: number, readonly balance: number, readonly amount: number) {
    super(`Balance limit exceeded: user ${userId} has ${balance}, adding ${amount} would pass ${Number.MAX_SAFE_INTEGER}`)
  }

  override details (): Record<string, unknown> {
    return { userId: this.userId, balance: this.balance }
  }
}

export class HoldNotFoundError extends DomainError {
  readonly code = 'HOLD_NOT_FOUND'
  constructor (readonly holdId: number) {
    super(`Hold ${holdId} does not exist`)
  }

  override details (): Record<string, unknown> {
    return { holdId: this.holdId }
  }
}

/** The hold was captured or voided already: exactly one settlement per hold. */
export class HoldNotActiveError extends DomainError {
  readonly code = 'HOLD_NOT_ACTIVE'
  constructor (readonly holdId: number, readonly status: string) {
    super(`Hold ${holdId} is ${status}, not active: it was settled already`)
  }

  override details (): Record<string, unknown> {
    return { holdId: this.holdId, status: this.status }
  }
}

/** The hold reached its expiresAt (the database's clock) before this capture or void: its money is available again. */
export class HoldExpiredError extends DomainError {
  readonly code = 'HOLD_EXPIRED'
  constructor (readonly holdId: number, readonly expiresAt: Date) {
    super(`Hold ${holdId} expired at ${expiresAt.toISOString()}; its money is available again`)
  }

  override details (): Record<string, unknown> {
    return { holdId: this.holdId, status: 'expired', expiresAt: this.expiresAt.toISOString() }
  }
}

export class CaptureExceedsHoldError extends DomainError {
  readonly code = 'CAPTURE_EXCEEDS_HOLD'
  constructor (readonly holdId: number, readonly held: number, readonly amount: number) {
    super(`Hold ${holdId} reserves ${held}; a capture of ${amount} exceeds it`)
  }

  override details (): Record<string, unknown> {
    return { holdId: this.holdId, holdAmount: this.held }
  }
}

/** A hold asks to live longer than HOLD_MAX_EXPIRES_IN_SECONDS allows: refused before the database. */
export class HoldLifetimeTooLongError extends DomainError {
  readonly code = 'HOLD_EXPIRY_TOO_LONG'
  constructor (readonly expiresInSeconds: number, readonly maxExpiresInSeconds: number) {
    super(`expiresInSeconds ${expiresInSeconds} is above this service's limit of ${maxExpiresInSeconds} s`)
  }

  override details (): Record<string, unknown> {
    return { maxExpiresInSeconds: this.maxExpiresInSeconds }
  }
}

/** A capture names the hold's own holder as the payee: refused before the database. */
export class SameUserCaptureError extends DomainError {
  readonly code = 'SAME_USER_CAPTURE'
  constructor (readonly holdId: number, readonly userId: number) {
    super(`Hold ${holdId} belongs to user ${userId}; toUserId must be another user (omit it to capture without a payee)`)
  }
}

/** An Idempotency-Key came back with a different request (another body, or another route). */
export class IdempotencyKeyReusedError extends DomainError {
  readonly code = 'IDEMPOTENCY_KEY_REUSED'
  constructor () {
    super('This Idempotency-Key was already used for a different request; use a new key for a new request')
  }
}

/** A transfer names the same user on both sides: refused before anything is read or written. */
export class SameUserTransferError extends DomainError {
  readonly code = 'SAME_USER_TRANSFER'
  constructor (readonly userId: number) {
    super(`A transfer needs two different users; both sides are user ${userId}`)
  }
}

/** A `before` (history) or `after` (event feed) cursor that this service did not issue. */
export class InvalidCursorError extends DomainError {
  readonly code = 'INVALID_CURSOR'
  constructor (parameter: 'before' | 'after' = 'before') {
    super(`querystring/${parameter} is not a cursor from a previous page (use nextCursor as given)`)
  }
}

/**
 * A feed cursor (or a per-user `after` seq) older than the retained log: events after it were pruned
 * (EVENTS_RETENTION_HOURS), so reading on from it would skip them. The answer says where the retained log starts.
 */
export class CursorExpiredError extends DomainError {
  readonly code = 'CURSOR_EXPIRED'
  constructor (readonly oldest: { oldestCursor: string } | { userId: number, oldestSeq: number }) {
    super('oldestCursor' in oldest
      ? `querystring/after is before the retained events (or absent: from the start): events after it were pruned. The retained feed is complete after oldestCursor ${oldest.oldestCursor}; read on with after=oldestCursor`
      : `querystring/after is before user ${oldest.userId}'s retained events: seq ${oldest.oldestSeq - 1} and older were pruned; the retained ones start at oldestSeq ${oldest.oldestSeq} (read with after=${oldest.oldestSeq - 1}; GET /api/users/{id} has the balance)`)
  }

  override details (): Record<string, unknown> {
    return { ...this.oldest }
  }
}

/**
 * What the caller's request was, for the advice a 503 gives: only a keyed write can learn its outcome by a retry;
 * a keyless write retried on that advice could run twice; a read changed nothing.
 */
export type UnavailableRequest = 'keyed-write' | 'keyless-write' | 'read'

const UNAVAILABLE_ADVICE: Record<UnavailableRequest, string> = {
  'keyed-write': 'retry with the same Idempotency-Key to learn the outcome',
  'keyless-write': 'the write may or may not have been applied. Before sending it again, look at the user\'s ' +
    'transactions (GET /api/users/{id}/transactions): without an Idempotency-Key a retry can apply it twice. ' +
    'Send an Idempotency-Key to make retries safe',
  read: 'nothing was changed; retry',
}

/** PostgreSQL could not be reached, or the connection broke mid-request: the outcome may be unknown to us. */
export class DatabaseUnavailableError extends DomainError {
  readonly code = 'DB_UNAVAILABLE'
  constructor (cause?: unknown, request: UnavailableRequest = 'keyless-write') {
    super(`The database is unavailable; ${UNAVAILABLE_ADVICE[request]}`, { cause })
  }
}

/**
 * A bounded queue was full, or a request's deadline passed before its change reached the database: nothing was
 * applied, so a retry (after `retryAfterSeconds`) is always safe, with or without an Idempotency-Key.
 */
export class OverloadedError extends DomainError {
  readonly code = 'OVERLOADED'
  constructor (readonly reason: string, readonly retryAfterSeconds: number) {
    super(`The service is overloaded (${reason}); nothing was applied, retry after ${retryAfterSeconds} s`)
  }
}

/** A bulk request with more changes than BULK_MAX_CHANGES allows: refused before anything is read or written. */
export class BulkTooManyChangesError extends DomainError {
  readonly code = 'BULK_TOO_MANY_CHANGES'
  constructor (readonly count: number, readonly maxChanges: number) {
    super(`body/changes has ${count} items; at most ${maxChanges} (BULK_MAX_CHANGES) per request`)
  }

  override details (): Record<string, unknown> {
    return { maxChanges: this.maxChanges }
  }
}

/**
 * An atomic bulk request whose items carry their own idempotencyKey: it runs as one transaction, so it is keyed as
 * one, by the Idempotency-Key header.
 */
export class BulkItemKeyInAtomicError extends DomainError {
  readonly code = 'BULK_ITEM_KEY_IN_ATOMIC'
  constructor (readonly index: number) {
    super(`body/changes/${index}/idempotencyKey: an atomic bulk request is keyed as a whole, by its Idempotency-Key header; per-item keys are for atomic: false`)
  }

  override details (): Record<string, unknown> {
    return { index: this.index }
  }
}

/** An Idempotency-Key header on a bulk request that is not atomic: each of its changes is keyed on its own. */
export class BulkKeyNeedsAtomicError extends DomainError {
  readonly code = 'BULK_KEY_NEEDS_ATOMIC'
  constructor () {
    super('An Idempotency-Key header keys an atomic bulk request (atomic: true); without atomic, give each change its own idempotencyKey')
  }
}

/**
 * An atomic bulk request refused as a whole because one of its changes was refused: `index` is the first such
 * change (0-based, in array order), `refusal` what that change alone would have got. Nothing was applied.
 */
export class BulkRefusedError extends DomainError {
  readonly code = 'BULK_REFUSED'
  constructor (readonly index: number, readonly refusal: DomainError) {
    super(`Nothing was applied: change ${index} was refused (${refusal.code}): ${refusal.message}`)
  }
}
