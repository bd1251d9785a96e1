import { Type, type Static } from 'typebox'
import { MAX_HOLD_LIFETIME_SECONDS } from '../config.js'
import { MAX_BALANCE } from '../domain/money.js'
import { Balance, BeforeCursor, BalanceConflictResponse, IdempotencyHeaders, Metadata, UserId, badRequest, commonErrors, errorRef, userNotFound } from './common.js'
import { UserParams } from './users.js'

export const HoldId = Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER, description: 'Hold id', examples: [7] })
const Amount = Type.Integer({ minimum: 1, maximum: MAX_BALANCE, description: 'Positive integer in the smallest unit', examples: [2] })
const Timestamp = Type.String({ format: 'date-time' })

export const HoldStatus = Type.Enum(['active', 'captured', 'voided', 'expired'], {
  description: 'active until captured, voided or expired; a hold past expiresAt reads as expired from that instant (the database clock)',
})

/** A hold as reads and write answers show it. */
const holdFields = {
  holdId: HoldId,
  userId: UserId,
  amount: Amount,
  status: HoldStatus,
  captured: Type.Integer({ minimum: 0, maximum: MAX_BALANCE, description: 'Taken from the balance by the capture (0 unless captured)' }),
  released: Type.Integer({ minimum: 0, maximum: MAX_BALANCE, description: 'Returned to available: amount − captured once settled, 0 while active' }),
  expiresAt: Timestamp,
  createdAt: Timestamp,
  settledAt: Type.Union([Timestamp, Type.Null()], { description: 'When it was captured, voided or expired; null while active' }),
  toUserId: Type.Union([UserId, Type.Null()], { description: 'The payee of a capture that paid another user' }),
  metadata: Type.Union([Metadata, Type.Null()]),
}

export const HoldResponse = Type.Object(holdFields, {
  description: 'A hold',
  examples: [{ holdId: 7, userId: 1, amount: 2, status: 'active', captured: 0, released: 0, expiresAt: '2026-01-01T01:00:00.000Z', createdAt: '2026-01-01T00:00:00.000Z', settledAt: null, toUserId: null, metadata: { orderId: 'A-1234' } }],
})

/** A hold write's answer: the hold after it, and the holder's figures from the same transaction. */
export const HoldWriteResponse = Type.Object({
  ...holdFields,
  balance: Balance,
  held: Type.Integer({ minimum: 0, maximum: MAX_BALANCE, description: 'Σ the holder\'s active holds' }),
  available: Type.Integer({ minimum: 0, maximum: MAX_BALANCE, description: 'balance − held: what withdrawals, transfers out and new holds may use' }),
  entryId: Type.Union([Type.Integer({ minimum: 1 }), Type.Null()], { description: 'The holder\'s journal entry a capture wrote; null for a hold or void' }),
  payee: Type.Union([Type.Object({ userId: UserId, balance: Balance, entryId: Type.Integer({ minimum: 1 }) }), Type.Null()], {
    description: 'A capture with toUserId: the payee\'s balance after it and its journal entry (kind capture-in)',
  }),
}, { description: 'The hold after this write, and the holder\'s balance, held and available after it' })

export const CreateHoldBody = Type.Object({
  userId: UserId,
  amount: Amount,
  expiresInSeconds: Type.Optional(Type.Integer({
    minimum: 1,
    maximum: MAX_HOLD_LIFETIME_SECONDS,
    description: 'Lifetime; default HOLD_DEFAULT_EXPIRES_IN_SECONDS (1 h), at most HOLD_MAX_EXPIRES_IN_SECONDS (7 days)',
    examples: [900],
  })),
  metadata: Type.Optional(Metadata),
}, { additionalProperties: false, examples: [{ userId: 1, amount: 2, expiresInSeconds: 900, metadata: { orderId: 'A-1234' } }] })
export type CreateHoldBody = Static<typeof CreateHoldBody>

export const CaptureBody = Type.Object({
  amount: Type.Optional({ ...Amount, description: 'How much to capture; default the whole hold; the rest is released' }),
  toUserId: Type.Optional({ ...UserId, description: 'Pay the captured money to this user in the same transaction' }),
  metadata: Type.Optional(Metadata),
}, { additionalProperties: false, examples: [{}, { amount: 1, toUserId: 2 }] })
export type CaptureBody = Static<typeof CaptureBody>

export const HoldParams = Type.Object({ holdId: HoldId }, { additionalProperties: false })

const notFoundBody = {
  statusCode: Type.Literal(404),
  error: Type.String({ examples: ['Not Found'] }),
  message: Type.String({ examples: ['Hold 7 does not exist'] }),
  holdId: Type.Optional(HoldId),
}
const holdNotFound = Type.Object({ ...notFoundBody, code: Type.Literal('HOLD_NOT_FOUND') }, {
  description: 'HOLD_NOT_FOUND: there is no such hold',
  examples: [{ statusCode: 404, code: 'HOLD_NOT_FOUND', error: 'Not Found', message: 'Hold 7 does not exist', holdId: 7 }],
})
const notFound = Type.Object({ ...notFoundBody, code: Type.Union([Type.Literal('HOLD_NOT_FOUND'), Type.Literal('USER_NOT_FOUND')]) }, {
  description: 'HOLD_NOT_FOUND: there is no such hold; USER_NOT_FOUND: the payee does not exist',
  examples: [{ statusCode: 404, code: 'HOLD_NOT_FOUND', error: 'Not Found', message: 'Hold 7 does not exist', holdId: 7 }],
})

export const HoldConflictResponse = Type.Object({
  statusCode: Type.Literal(409),
  code: Type.Union([Type.Literal('HOLD_NOT_ACTIVE'), Type.Literal('HOLD_EXPIRED'), Type.Literal('CAPTURE_EXCEEDS_HOLD'), Type.Literal('BALANCE_LIMIT_EXCEEDED')]),
  error: Type.String({ examples: ['Conflict'] }),
  message: Type.String(),
  holdId: Type.Optional(HoldId),
  status: Type.Optional(HoldStatus),
  expiresAt: Type.Optional(Timestamp),
  holdAmount: Type.Optional(Amount),
  userId: Type.Optional(UserId),
  balance: Type.Optional(Balance),
}, {
  description: 'HOLD_NOT_ACTIVE (with its status: captured or voided already), HOLD_EXPIRED (past expiresAt: its money is available again), ' +
    'CAPTURE_EXCEEDS_HOLD (with holdAmount), BALANCE_LIMIT_EXCEEDED (the payee\'s balance would pass 2^53 − 1). Nothing changed',
  examples: [{ statusCode: 409, code: 'HOLD_NOT_ACTIVE', error: 'Conflict', message: 'Hold 7 is captured, not active: it was settled already', holdId: 7, status: 'captured' }],
})

export const createHoldSchema = {
  summary: 'Reserve money (a hold)',
  description: 'Reserves `amount` of the user\'s available money (balance − active holds) until it is captured, voided or ' +
    'expires. The balance does not change; `held` rises and `available` falls by `amount`. 409 INSUFFICIENT_FUNDS when ' +
    'available < amount. 400 HOLD_EXPIRY_TOO_LONG past HOLD_MAX_EXPIRES_IN_SECONDS. With an `Idempotency-Key`, a retry replays the first answer.',
  tags: ['holds'],
  headers: IdempotencyHeaders,
  body: CreateHoldBody,
  response: {
    201: HoldWriteResponse,
    400: badRequest,
    404: userNotFound,
    409: BalanceConflictResponse,
    422: errorRef,
    ...commonErrors,
  },
}

export const captureHoldSchema = {
  summary: 'Capture a hold',
  description: 'Takes the captured amount (default: the whole hold) from the holder\'s balance and releases the rest, writing ' +
    'a journal entry (kind capture) that carries the holdId; with `toUserId`, that user receives it in the same transaction ' +
    '(kind capture-in). Exactly one capture or void settles a hold; anything after it is a 409 naming why.',
  tags: ['holds'],
  headers: IdempotencyHeaders,
  params: HoldParams,
  body: CaptureBody,
  response: {
    200: HoldWriteResponse,
    400: badRequest,
    404: notFound,
    409: HoldConflictResponse,
    422: errorRef,
    ...commonErrors,
  },
}

export const voidHoldSchema = {
  summary: 'Void a hold',
  description: 'Releases the whole hold: `held` falls by its amount, the balance does not change, no journal entry is written.',
  tags: ['holds'],
  headers: IdempotencyHeaders,
  params: HoldParams,
  response: {
    200: HoldWriteResponse,
    400: badRequest,
    404: holdNotFound,
    409: HoldConflictResponse,
    422: errorRef,
    ...commonErrors,
  },
}

export const getHoldSchema = {
  summary: 'Read a hold',
  description: 'The hold as of this read: an active hold past its expiresAt reads as expired.',
  tags: ['holds'],
  params: HoldParams,
  response: { 200: HoldResponse, 400: badRequest, 404: holdNotFound, ...commonErrors },
}

export const HOLDS_PAGE_MAX = 500
export const HOLDS_PAGE_DEFAULT = 50

export const HoldsQuery = Type.Object({
  status: Type.Optional(HoldStatus),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: HOLDS_PAGE_MAX, default: HOLDS_PAGE_DEFAULT, description: 'Holds per page' })),
  before: BeforeCursor,
}, { additionalProperties: false })

export const userHoldsSchema = {
  summary: 'A user\'s holds, newest first',
  description: 'Keyset pagination like the journal\'s; `status` filters as of this read (expiry counted from expiresAt).',
  tags: ['holds'],
  params: UserParams,
  querystring: HoldsQuery,
  response: {
    200: Type.Object({
      items: Type.Array(HoldResponse, { maxItems: HOLDS_PAGE_MAX }),
      nextCursor: Type.Union([Type.String(), Type.Null()], { description: 'Pass as `before` for the next (older) page; null at the end' }),
    }, { description: 'One page of the user\'s holds, newest first' }),
    400: badRequest,
    404: userNotFound,
    ...commonErrors,
  },
}
