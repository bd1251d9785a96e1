import { Type, type Static } from 'typebox'
import { Balance, BeforeCursor, IdempotencyHeaders, Metadata, UserId, badRequest, commonErrors, errorRef, userNotFound } from './common.js'
import { MAX_BALANCE } from '../domain/money.js'

export const UserParams = Type.Object({ id: UserId }, { additionalProperties: false })
export type UserParams = Static<typeof UserParams>

export const UserResponse = Type.Object({
  id: UserId,
  balance: Balance,
  held: Type.Integer({ minimum: 0, maximum: MAX_BALANCE, description: 'Σ active, unexpired holds' }),
  available: Type.Integer({ minimum: 0, maximum: MAX_BALANCE, description: 'balance − held: what withdrawals, transfers out and new holds may use' }),
  createdAt: Type.String({ format: 'date-time', description: 'When the user was created' }),
  updatedAt: Type.String({ format: 'date-time', description: 'When the balance or holds last changed' }),
}, {
  description: 'The user, its balance, held and available, all from one snapshot',
  examples: [{ id: 1, balance: 10000, held: 2, available: 9998, createdAt: '2025-01-01T00:00:00.000Z', updatedAt: '2025-01-01T00:00:00.000Z' }],
})

export const getUserSchema = {
  summary: 'Read a user',
  description: 'The user with its current balance (committed changes only).',
  tags: ['users'],
  params: UserParams,
  response: {
    200: UserResponse,
    400: badRequest,
    404: userNotFound,
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
    400: badRequest,
    422: errorRef,
    ...commonErrors,
  },
}

/** Page size bounds: large enough for a screen or an export batch, small enough to bound one query's work. */
export const HISTORY_PAGE_MAX = 500
export const HISTORY_PAGE_DEFAULT = 50

export const TransactionsQuery = Type.Object({
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: HISTORY_PAGE_MAX, default: HISTORY_PAGE_DEFAULT, description: 'Entries per page' })),
  before: BeforeCursor,
}, { additionalProperties: false })
export type TransactionsQuery = Static<typeof TransactionsQuery>

export const JournalEntryResponse = Type.Object({
  id: Type.Integer({ minimum: 1, description: 'Journal entry id; per user, id order is commit order' }),
  amount: Type.Integer({ description: 'Signed change of the balance', examples: [-2] }),
  balanceAfter: Balance,
  createdAt: Type.String({ format: 'date-time' }),
  kind: Type.Union([Type.Literal('opening'), Type.Literal('change'), Type.Literal('transfer-in'), Type.Literal('transfer-out'),
    Type.Literal('capture'), Type.Literal('capture-in')], { description: 'capture: a hold captured from this user; capture-in: paid to this user by a capture' }),
  transferId: Type.Union([Type.String({ format: 'uuid' }), Type.Null()], { description: 'Both legs of a transfer share it; null otherwise' }),
  holdId: Type.Union([Type.Integer({ minimum: 1 }), Type.Null()], { description: 'The hold a capture settled; null otherwise' }),
  idempotencyKey: Type.Union([Type.String(), Type.Null()], { description: 'The Idempotency-Key the write came with; null without one' }),
  metadata: Type.Union([Metadata, Type.Null()], { description: 'The metadata the write came with; null without' }),
})

export const TransactionsResponse = Type.Object({
  items: Type.Array(JournalEntryResponse, { maxItems: HISTORY_PAGE_MAX }),
  nextCursor: Type.Union([Type.String(), Type.Null()], { description: 'Pass as `before` for the next (older) page; null at the end' }),
}, { description: 'One page of the user\'s journal entries, newest first' })

export const transactionsSchema = {
  summary: 'A user\'s journal, newest first',
  description: 'Keyset pagination: pages neither skip nor repeat entries while new ones are written.',
  tags: ['users'],
  params: UserParams,
  querystring: TransactionsQuery,
  response: {
    200: TransactionsResponse,
    400: badRequest,
    404: userNotFound,
    ...commonErrors,
  },
}

export const BalanceAtQuery = Type.Object({
  at: Type.String({ format: 'date-time', description: 'An instant (ISO 8601 with a time zone)', examples: ['2026-01-01T00:00:00Z'] }),
}, { additionalProperties: false })

export const balanceAtSchema = {
  summary: 'A user\'s balance as of an instant',
  description: 'balanceAfter of the user\'s newest journal entry written at or before `at` (0 before the first), with that ' +
    'entry\'s id. Per user, entry times never go backwards in id order, so this agrees with the journal\'s order.',
  tags: ['users'],
  params: UserParams,
  querystring: BalanceAtQuery,
  response: {
    200: Type.Object({
      userId: UserId,
      at: Type.String({ format: 'date-time' }),
      balance: Balance,
      entryId: Type.Union([Type.Integer({ minimum: 1 }), Type.Null()], { description: 'The entry that set it; null before the first' }),
    }, { description: 'The balance as of `at`' }),
    400: badRequest,
    404: userNotFound,
    ...commonErrors,
  },
}
