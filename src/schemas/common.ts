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
}, { description: 'The change would take the balance out of [0, 2^53 − 1]; nothing changed' })

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

/** The error responses every route can give, for its schema's `response` map. */
export const commonErrors = {
  500: errorRef,
  503: errorRef,
}
export { errorRef }
