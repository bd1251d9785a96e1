import { Type } from 'typebox'
import { MAX_CURSOR_LENGTH } from '../domain/cursor.js'
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
  available: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_BALANCE, description: 'With INSUFFICIENT_FUNDS: balance − active holds, the figure that was checked' })),
}, {
  description: 'INSUFFICIENT_FUNDS: the money available (balance − active holds) does not cover the withdrawal; ' +
    'BALANCE_LIMIT_EXCEEDED: the change would take the balance above 2^53 − 1. Nothing changed',
  examples: [{ statusCode: 409, code: 'INSUFFICIENT_FUNDS', error: 'Conflict', message: 'Insufficient funds: user 1 has 0, the change is -2', userId: 1, balance: 0, available: 0 }],
})

/** Bounds of `metadata` (Stripe-like, sized to fit the 4 KB body limit): at most 16 keys, 40-character keys, 120-character values. */
export const METADATA_MAX_KEYS = 16
export const METADATA_KEY_MAX_LENGTH = 40
export const METADATA_VALUE_MAX_LENGTH = 120

/** A flat object of strings a client attaches to a write; stored with its journal entries (or hold) and returned by reads. */
export const Metadata = Type.Record(
  Type.String({ pattern: `^[A-Za-z0-9_.:-]{1,${METADATA_KEY_MAX_LENGTH}}$` }),
  Type.String({ maxLength: METADATA_VALUE_MAX_LENGTH }),
  {
    maxProperties: METADATA_MAX_KEYS,
    additionalProperties: false,
    description: `Your own labels for this write: up to ${METADATA_MAX_KEYS} keys (1–${METADATA_KEY_MAX_LENGTH} characters of A–Z a–z 0–9 _ . : -), ` +
      `string values of at most ${METADATA_VALUE_MAX_LENGTH} characters. Part of the request an Idempotency-Key identifies.`,
    examples: [{ orderId: 'A-1234' }],
  },
)

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
  'FST_ERR_VALIDATION (or another 400 code): malformed JSON, missing or unknown fields, wrong types, values out of range; ' +
    'a number written with a fraction or an exponent (integers are judged as written, never rounded); ' +
    'SAME_USER_TRANSFER, INVALID_CURSOR where the route says; HPE_* when the request is not readable HTTP',
  { statusCode: 400, code: 'FST_ERR_VALIDATION', error: 'Bad Request', message: 'body/amount must be integer' },
)

export const userNotFound = errorResponse(
  'USER_NOT_FOUND: the user does not exist',
  { statusCode: 404, code: 'USER_NOT_FOUND', error: 'Not Found', message: 'User 42 does not exist' },
)

/** Retry-After on a 503 OVERLOADED: seconds to wait before the retry (absent on DB_UNAVAILABLE). */
const RETRY_AFTER = { type: 'integer', minimum: 0, description: 'With OVERLOADED: seconds to wait before retrying (not sent with DB_UNAVAILABLE)' }

/** The error responses every database-backed route can give, for its schema's `response` map. */
export const commonErrors = {
  500: errorResponse(
    'INTERNAL_ERROR: a bug in the service, never caused by what the client sent; logged in full on the server',
    { statusCode: 500, code: 'INTERNAL_ERROR', error: 'Internal Server Error', message: 'Internal Server Error' },
  ),
  503: {
    ...errorResponse(
      'DB_UNAVAILABLE: PostgreSQL cannot be reached or the connection broke mid-request; the message says what is true for ' +
        'the request: a write with an Idempotency-Key learns its outcome by a retry with the same key, a write without one ' +
        'may or may not have been applied (look at the user\'s transactions before sending it again), a read changed nothing. ' +
        'OVERLOADED (with `Retry-After`): a bounded queue was full, the request\'s deadline passed, or the idempotency key table is at its bound (IDEMPOTENCY_MAX_KEYS); nothing was applied',
      { statusCode: 503, code: 'DB_UNAVAILABLE', error: 'Service Unavailable', message: 'The database is unavailable; retry with the same Idempotency-Key to learn the outcome' },
    ),
    headers: { 'Retry-After': RETRY_AFTER },
  },
}

/**
 * Answers any route can give before its handler runs, whatever it is: the HTTP layer's own refusals
 * (src/http-client-error-handler.ts), which carry Node's code.
 */
export const transportErrors = {
  408: errorResponse(
    'ERR_HTTP_REQUEST_TIMEOUT: the request (headers or body) took longer than the server\'s limits to arrive; the connection is closed',
    { statusCode: 408, code: 'ERR_HTTP_REQUEST_TIMEOUT', error: 'Request Timeout', message: 'Request Timeout: the request could not be read as HTTP (ERR_HTTP_REQUEST_TIMEOUT)' },
  ),
  431: errorResponse(
    'HPE_HEADER_OVERFLOW: the request headers are larger than 16 KB; the connection is closed',
    { statusCode: 431, code: 'HPE_HEADER_OVERFLOW', error: 'Request Header Fields Too Large', message: 'Request Header Fields Too Large: the request could not be read as HTTP (HPE_HEADER_OVERFLOW)' },
  ),
}

/** A 400 for a route that takes no input: only a request that is not readable HTTP gets one. */
export const unreadableRequest = errorResponse(
  'HPE_* (or BAD_REQUEST): the request could not be read as HTTP (a malformed request line or header); the connection is closed',
  { statusCode: 400, code: 'HPE_INVALID_HEADER_TOKEN', error: 'Bad Request', message: 'Bad Request: the request could not be read as HTTP (HPE_INVALID_HEADER_TOKEN)' },
)

/** Answers of a route that takes a body, before it is parsed. */
export const bodyErrors = {
  413: errorResponse(
    'FST_ERR_CTP_BODY_TOO_LARGE: the body is larger than 4 KB',
    { statusCode: 413, code: 'FST_ERR_CTP_BODY_TOO_LARGE', error: 'Payload Too Large', message: 'Request body is too large' },
  ),
  415: errorResponse(
    'FST_ERR_CTP_INVALID_MEDIA_TYPE: a body that is not `application/json`',
    { statusCode: 415, code: 'FST_ERR_CTP_INVALID_MEDIA_TYPE', error: 'Unsupported Media Type', message: 'Unsupported Media Type' },
  ),
}

/** Answers of a route with a path parameter that the router refuses before the route runs. */
export const pathErrors = {
  414: errorResponse(
    'FST_ERR_MAX_PARAM_LENGTH: a path parameter longer than 100 characters',
    { statusCode: 414, code: 'FST_ERR_MAX_PARAM_LENGTH', error: 'URI Too Long', message: 'maxParamLength limit exceeded' },
  ),
}
export { errorRef }

/** The `before` query parameter of every keyset-paged list (history, holds): a cursor this service issued. */
export const BeforeCursor = Type.Optional(Type.String({
  minLength: 1,
  maxLength: MAX_CURSOR_LENGTH,
  description: 'Opaque cursor: the `nextCursor` of the previous page. Anything else is a 400 INVALID_CURSOR.',
}))
