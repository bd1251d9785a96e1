import { Type } from 'typebox'
import { MAX_BALANCE } from '../domain/money.js'

/** A user id: integer ≥ 1, exact in JSON. */
export const UserId = Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER, description: 'User id', examples: [1] })

/** A balance in the smallest unit: an integer in [0, 2^53 − 1]. */
export const Balance = Type.Integer({ minimum: 0, maximum: MAX_BALANCE, description: 'Balance in the smallest unit (cents, points)', examples: [10000] })

/** Fastify's error shape; `code` is stable and clients branch on it. */
export const ErrorResponse = Type.Object({
  statusCode: Type.Integer({ examples: [400] }),
  code: Type.String({ description: 'Stable machine-readable error code', examples: ['FST_ERR_VALIDATION'] }),
  error: Type.String({ examples: ['Bad Request'] }),
  message: Type.String({ examples: ['body/amount must be integer'] }),
}, { $id: 'ErrorResponse', description: 'An error' })

/** 409 for a change the balance bounds refuse: the body also carries the balance that was checked. */
export const BalanceConflictResponse = Type.Object({
  statusCode: Type.Literal(409),
  code: Type.Union([Type.Literal('INSUFFICIENT_FUNDS'), Type.Literal('BALANCE_LIMIT_EXCEEDED')]),
  error: Type.String({ examples: ['Conflict'] }),
  message: Type.String({ examples: ['Insufficient funds: user 1 has 0, the change is -2'] }),
  userId: UserId,
  balance: Balance,
}, {
  description: 'INSUFFICIENT_FUNDS or BALANCE_LIMIT_EXCEEDED: the change would take the balance out of [0, 2^53 − 1]; nothing changed',
  examples: [{ statusCode: 409, code: 'INSUFFICIENT_FUNDS', error: 'Conflict', message: 'Insufficient funds: user 1 has 0, the change is -2', userId: 1, balance: 0 }],
})

/**
 * The optional `Idempotency-Key` request header of every write: 1–255 printable ASCII characters (space to `~`),
 * after the IETF draft "The Idempotency-Key HTTP Header Field". Header names arrive lower-cased.
 */
export const IdempotencyHeaders = Type.Object({
  'idempotency-key': Type.Optional(Type.String({
    minLength: 1,
    maxLength: 255,
    pattern: '^[\\x20-\\x7E]+$',
    description: 'Makes the write safe to retry: the same key with the same body replays the first answer ' +
      '(with `Idempotent-Replayed: true`) and changes nothing; with a different body it is a 422 IDEMPOTENCY_KEY_REUSED.',
    examples: ['3f0c6d1e-order-1234'],
  })),
})

const errorRef = Type.Ref('ErrorResponse')

/**
 * An error response in the shared ErrorResponse shape, with the description (which codes, when) and an example
 * the OpenAPI document shows for this status.
 */
export function errorResponse (description: string, example: { statusCode: number, code: string, error: string, message: string }): Record<string, unknown> {
  return { description, content: { 'application/json': { schema: { $ref: 'ErrorResponse' }, example } } }
}

/** 400 for anything the request got wrong: malformed JSON, missing, extra or mistyped fields. */
export const badRequest = errorResponse(
  'FST_ERR_VALIDATION (or another 400 code): malformed JSON, missing or unknown fields, wrong types, values out of range',
  { statusCode: 400, code: 'FST_ERR_VALIDATION', error: 'Bad Request', message: 'body/amount must be integer' },
)

export const userNotFound = errorResponse(
  'USER_NOT_FOUND: the user does not exist',
  { statusCode: 404, code: 'USER_NOT_FOUND', error: 'Not Found', message: 'User 42 does not exist' },
)

/** The error responses every database-backed route can give, for its schema's `response` map. */
export const commonErrors = {
  500: errorResponse(
    'INTERNAL_ERROR: a bug in the service, never caused by what the client sent; logged in full on the server',
    { statusCode: 500, code: 'INTERNAL_ERROR', error: 'Internal Server Error', message: 'Internal Server Error' },
  ),
  503: errorResponse(
    'DB_UNAVAILABLE: PostgreSQL cannot be reached or the connection broke mid-request; retry with the same Idempotency-Key to learn the outcome. ' +
      'OVERLOADED (with `Retry-After`): a bounded queue was full or the request\'s deadline passed; nothing was applied',
    { statusCode: 503, code: 'DB_UNAVAILABLE', error: 'Service Unavailable', message: 'The database is unavailable; retry with the same Idempotency-Key to learn the outcome' },
  ),
}
export { errorRef }
