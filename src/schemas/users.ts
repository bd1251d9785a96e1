import { Type, type Static } from 'typebox'
import { Balance, IdempotencyHeaders, UserId, commonErrors, errorRef } from './common.js'
import { MAX_CURSOR_LENGTH } from '../domain/cursor.js'
import { MAX_BALANCE } from '../domain/money.js'

export const UserParams = Type.Object({ id: UserId }, { additionalProperties: false })
export type UserParams = Static<typeof UserParams>

export const UserResponse = Type.Object({
  id: UserId,
  balance: Balance,
  createdAt: Type.String({ format: 'date-time' }),
  updatedAt: Type.String({ format: 'date-time' }),
})

export const getUserSchema = {
  summary: 'Read a user',
  tags: ['users'],
  params: UserParams,
  response: {
    200: UserResponse,
    400: errorRef,
    404: errorRef,
    ...commonErrors,
  },
}

export const CreateUserBody = Type.Object({
  balance: Type.Optional(Type.Integer({
    minimum: 0,
    maximum: MAX_BALANCE,
    default: 0,
    description: 'Initial balance; > 0 is written as the opening journal entry',
    examples: [500],
  })),
}, { additionalProperties: false, examples: [{ balance: 500 }, {}] })
export type CreateUserBody = Static<typeof CreateUserBody>

export const createUserSchema = {
  summary: 'Create a user',
  description: 'Creates a user with an initial balance (default 0). A balance > 0 becomes the user\'s opening journal entry, ' +
    'in the same transaction. With an `Idempotency-Key`, a retry replays the first answer instead of creating another user.',
  tags: ['users'],
  headers: IdempotencyHeaders,
  body: CreateUserBody,
  response: {
    201: UserResponse,
    400: errorRef,
    422: errorRef,
    ...commonErrors,
  },
}

/** Page size bounds: large enough for a screen or an export batch, small enough to bound one query's work. */
export const HISTORY_PAGE_MAX = 500
export const HISTORY_PAGE_DEFAULT = 50

export const TransactionsQuery = Type.Object({
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: HISTORY_PAGE_MAX, default: HISTORY_PAGE_DEFAULT, description: 'Entries per page' })),
  before: Type.Optional(Type.String({
    minLength: 1,
    maxLength: MAX_CURSOR_LENGTH,
    description: 'Opaque cursor: the `nextCursor` of the previous page. Anything else is a 400 INVALID_CURSOR.',
  })),
}, { additionalProperties: false })
export type TransactionsQuery = Static<typeof TransactionsQuery>

export const JournalEntryResponse = Type.Object({
  id: Type.Integer({ minimum: 1, description: 'Journal entry id; per user, id order is commit order' }),
  amount: Type.Integer({ description: 'Signed change of the balance', examples: [-2] }),
  balanceAfter: Balance,
  createdAt: Type.String({ format: 'date-time' }),
  kind: Type.Union([Type.Literal('opening'), Type.Literal('change'), Type.Literal('transfer-in'), Type.Literal('transfer-out')]),
  transferId: Type.Union([Type.String({ format: 'uuid' }), Type.Null()], { description: 'Both legs of a transfer share it; null otherwise' }),
  idempotencyKey: Type.Union([Type.String(), Type.Null()], { description: 'The Idempotency-Key the write came with; null without one' }),
})

export const TransactionsResponse = Type.Object({
  items: Type.Array(JournalEntryResponse, { maxItems: HISTORY_PAGE_MAX }),
  nextCursor: Type.Union([Type.String(), Type.Null()], { description: 'Pass as `before` for the next (older) page; null at the end' }),
})

export const transactionsSchema = {
  summary: 'A user\'s journal, newest first',
  description: 'Keyset pagination: pages neither skip nor repeat entries while new ones are written.',
  tags: ['users'],
  params: UserParams,
  querystring: TransactionsQuery,
  response: {
    200: TransactionsResponse,
    400: errorRef,
    404: errorRef,
    ...commonErrors,
  },
}
