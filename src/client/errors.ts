/**
 * The client's errors. Two families under BalanceClientError:
 * - BalanceApiError: the service answered with an error status; subclasses by the answer's stable `code`.
 * - BalanceNetworkError: no answer at all (connection refused or dropped, timeout) after the retries ran out.
 * Every error of a write carries the Idempotency-Key it was sent with, so the caller can ask again later with the
 * same key and learn the real outcome.
 */

/** The answer body of an error: Fastify's `{statusCode, code, error, message}`, plus what a code adds (e.g. `balance`). */
export interface ErrorBody {
  statusCode?: number
  code?: string
  error?: string
  message?: string
  [field: string]: unknown
}

/** How the retries went, on every error the client raises. */
export interface AttemptSummary {
  /** Requests sent (1 when nothing was retried). */
  attempts: number
  /** Milliseconds from the first attempt to the error. */
  elapsedMs: number
  /** The Idempotency-Key of a write (the caller's or the one the client generated); undefined for reads. */
  idempotencyKey: string | undefined
  /** The x-request-id sent with every attempt. */
  requestId: string | undefined
  /**
   * Why the client stopped: `answer` (a final answer such as a 4xx, never retried), `attempts` or `time` (the retry
   * bounds ran out while the service stayed unavailable or unreachable), `aborted` (the caller's signal).
   */
  stoppedBy: 'answer' | 'attempts' | 'time' | 'aborted'
}

export class BalanceClientError extends Error {
  readonly attempts: number
  readonly elapsedMs: number
  readonly idempotencyKey: string | undefined
  readonly requestId: string | undefined
  readonly stoppedBy: AttemptSummary['stoppedBy']

  constructor (message: string, summary: AttemptSummary, options?: { cause?: unknown }) {
    super(message, options)
    this.name = new.target.name
    this.attempts = summary.attempts
    this.elapsedMs = summary.elapsedMs
    this.idempotencyKey = summary.idempotencyKey
    this.requestId = summary.requestId
    this.stoppedBy = summary.stoppedBy
  }
}

/** The service answered with an error. `code` is the body's stable code (`HTTP_<status>` if it had none). */
export class BalanceApiError extends BalanceClientError {
  readonly status: number
  readonly code: string
  readonly body: ErrorBody
  /** True when the answer was replayed from the Idempotency-Key's stored outcome (`Idempotent-Replayed: true`). */
  readonly replayed: boolean

  constructor (status: number, body: ErrorBody, replayed: boolean, summary: AttemptSummary) {
    const code = typeof body.code === 'string' ? body.code : `HTTP_${status}`
    const text = typeof body.message === 'string' ? body.message : JSON.stringify(body).slice(0, 200)
    super(`${status} ${code}: ${text}${retryNote(summary)}`, summary)
    this.status = status
    this.code = code
    this.body = body
    this.replayed = replayed
  }
}

/** 400 (FST_ERR_VALIDATION, SAME_USER_TRANSFER, INVALID_CURSOR, …), 413, 414, 415: the request itself is wrong. Never retried. */
export class ValidationError extends BalanceApiError {}

/** 401 UNAUTHORIZED: API_TOKENS is set on the service and the client's `token` is missing or not one of them. */
export class UnauthorizedError extends BalanceApiError {}

/** 403 FORBIDDEN: the client's `token` is a read-only one (the service's API_READ_TOKENS) and the request writes. */
export class ForbiddenError extends BalanceApiError {}

/** 404 USER_NOT_FOUND. */
export class UserNotFoundError extends BalanceApiError {}

/** 422 IDEMPOTENCY_KEY_REUSED: this key was used before for a different request. */
export class IdempotencyKeyReusedError extends BalanceApiError {}

/**
 * 410 CURSOR_EXPIRED (GET /api/events, GET /api/users/:id/events): the events after `after` were deleted by the
 * service's retention, so reading on would skip them. `oldestCursor` (the global feed) is where the retained feed
 * is complete; `oldestSeq` (a user's feed) is the user's first seq kept. Resynchronise (e.g. the user's balance from
 * GET /api/users/:id) and read on from there. Never retried.
 */
export class CursorExpiredError extends BalanceApiError {
  readonly oldestCursor: string | undefined
  readonly oldestSeq: number | undefined

  constructor (status: number, body: ErrorBody, replayed: boolean, summary: AttemptSummary) {
    super(status, body, replayed, summary)
    this.oldestCursor = typeof body.oldestCursor === 'string' ? body.oldestCursor : undefined
    this.oldestSeq = typeof body.oldestSeq === 'number' ? body.oldestSeq : undefined
  }
}

/** 409 with the balance the service checked. */
abstract class BalanceConflictError extends BalanceApiError {
  /** The user whose bound was hit (the sender of a transfer for funds, the receiver for the limit). */
  readonly userId: number
  /** That user's balance when the change was refused; nothing changed. */
  readonly balance: number

  constructor (status: number, body: ErrorBody, replayed: boolean, summary: AttemptSummary) {
    super(status, body, replayed, summary)
    this.userId = typeof body.userId === 'number' ? body.userId : Number.NaN
    this.balance = typeof body.balance === 'number' ? body.balance : Number.NaN
  }
}

/**
 * 409 INSUFFICIENT_FUNDS: the money available (balance − active holds) does not cover the withdrawal, transfer or
 * hold; nothing changed. `available` is the figure that was checked (the balance for an answer stored before holds).
 */
export class InsufficientFundsError extends BalanceConflictError {
  readonly available: number

  constructor (status: number, body: ErrorBody, replayed: boolean, summary: AttemptSummary) {
    super(status, body, replayed, summary)
    this.available = typeof body.available === 'number' ? body.available : this.balance
  }
}

/** 409 BALANCE_LIMIT_EXCEEDED: the change would take the balance above 2^53 − 1; nothing changed. */
export class BalanceLimitExceededError extends BalanceConflictError {}

/** 404 HOLD_NOT_FOUND: no such hold. */
export class HoldNotFoundError extends BalanceApiError {
  readonly holdId: number

  constructor (status: number, body: ErrorBody, replayed: boolean, summary: AttemptSummary) {
    super(status, body, replayed, summary)
    this.holdId = typeof body.holdId === 'number' ? body.holdId : Number.NaN
  }
}

/** 409 about a hold's state: the hold id, and its status when the service said it. */
abstract class HoldConflictError extends BalanceApiError {
  readonly holdId: number
  readonly holdStatus: string | undefined

  constructor (status: number, body: ErrorBody, replayed: boolean, summary: AttemptSummary) {
    super(status, body, replayed, summary)
    this.holdId = typeof body.holdId === 'number' ? body.holdId : Number.NaN
    this.holdStatus = typeof body.status === 'string' ? body.status : undefined
  }
}

/** 409 HOLD_NOT_ACTIVE: the hold was captured or voided already (`holdStatus` says which); nothing changed. */
export class HoldNotActiveError extends HoldConflictError {}

/** 409 HOLD_EXPIRED: the hold passed its expiresAt before this capture or void; its money is available again. */
export class HoldExpiredError extends HoldConflictError {}

/** 409 CAPTURE_EXCEEDS_HOLD: the capture asked for more than the hold reserves (`holdAmount`); nothing changed. */
export class CaptureExceedsHoldError extends HoldConflictError {
  readonly holdAmount: number

  constructor (status: number, body: ErrorBody, replayed: boolean, summary: AttemptSummary) {
    super(status, body, replayed, summary)
    this.holdAmount = typeof body.holdAmount === 'number' ? body.holdAmount : Number.NaN
  }
}

/**
 * 503 DB_UNAVAILABLE on every attempt until the retry bounds ran out. For a write the outcome is unknown: ask
 * again later with the same `idempotencyKey` to learn it (the service replays the committed result, or runs it once).
 */
export class DatabaseUnavailableError extends BalanceApiError {}

/**
 * 503 OVERLOADED on every attempt until the retry bounds ran out: the service shed the request (a bounded queue was
 * full or its deadline passed) and applied nothing, so sending it again later is safe with or without a key.
 * `retryAfterSeconds` is the last answer's `Retry-After` (NaN when absent).
 */
export class OverloadedError extends BalanceApiError {
  readonly retryAfterSeconds: number

  constructor (status: number, body: ErrorBody, replayed: boolean, summary: AttemptSummary, retryAfter?: string | null) {
    super(status, body, replayed, summary)
    this.retryAfterSeconds = retryAfter === undefined || retryAfter === null || !/^[0-9]+$/.test(retryAfter) ? Number.NaN : Number(retryAfter)
  }
}

/**
 * No answer: every attempt failed to connect, lost its connection or timed out, on every base URL, until the retry
 * bounds ran out. For a write the outcome is unknown: ask again later with the same `idempotencyKey`.
 * `reason` is the last attempt's failure (`ECONNREFUSED`, `ECONNRESET`, `TIMEOUT`, …).
 */
export class BalanceNetworkError extends BalanceClientError {
  readonly code = 'NETWORK_ERROR'
  readonly reason: string
  readonly url: string

  constructor (reason: string, url: string, summary: AttemptSummary, cause: unknown) {
    super(`no answer from ${url} (${reason})${retryNote(summary)}`, summary, { cause })
    this.reason = reason
    this.url = url
  }
}

function retryNote (summary: AttemptSummary): string {
  const key = summary.idempotencyKey === undefined ? '' : `; Idempotency-Key ${summary.idempotencyKey}: ask again with it to learn the outcome`
  switch (summary.stoppedBy) {
    case 'attempts': return ` — gave up after ${summary.attempts} attempts (the attempt limit) in ${Math.round(summary.elapsedMs)} ms${key}`
    case 'time': return ` — gave up after ${summary.attempts} attempts in ${Math.round(summary.elapsedMs)} ms (the time limit)${key}`
    case 'aborted': return ` — aborted by the caller after ${summary.attempts} attempts${key}`
    case 'answer': return ''
  }
}

type ApiErrorClass = new (status: number, body: ErrorBody, replayed: boolean, summary: AttemptSummary) => BalanceApiError

const BY_CODE: Record<string, ApiErrorClass> = {
  INSUFFICIENT_FUNDS: InsufficientFundsError,
  BALANCE_LIMIT_EXCEEDED: BalanceLimitExceededError,
  USER_NOT_FOUND: UserNotFoundError,
  HOLD_NOT_FOUND: HoldNotFoundError,
  HOLD_NOT_ACTIVE: HoldNotActiveError,
  HOLD_EXPIRED: HoldExpiredError,
  CAPTURE_EXCEEDS_HOLD: CaptureExceedsHoldError,
  IDEMPOTENCY_KEY_REUSED: IdempotencyKeyReusedError,
  CURSOR_EXPIRED: CursorExpiredError,
  UNAUTHORIZED: UnauthorizedError,
  FORBIDDEN: ForbiddenError,
  DB_UNAVAILABLE: DatabaseUnavailableError,
}

/** The typed error for an error answer: by `code` first, then by status for the 400-family refusals. */
export function apiError (status: number, body: ErrorBody, replayed: boolean, summary: AttemptSummary, retryAfter?: string | null): BalanceApiError {
  if (body.code === 'OVERLOADED') return new OverloadedError(status, body, replayed, summary, retryAfter)
  const byCode = typeof body.code === 'string' ? BY_CODE[body.code] : undefined
  if (byCode !== undefined) return new byCode(status, body, replayed, summary)
  if (status === 400 || status === 413 || status === 414 || status === 415) return new ValidationError(status, body, replayed, summary)
  if (status === 401) return new UnauthorizedError(status, body, replayed, summary)
  if (status === 403) return new ForbiddenError(status, body, replayed, summary)
  return new BalanceApiError(status, body, replayed, summary)
}
