import { Type, type Static } from 'typebox'
import { Balance, BalanceConflictResponse, IdempotencyHeaders, Metadata, UserId, badRequest, commonErrors, errorRef, userNotFound } from './common.js'
import { MAX_BALANCE } from '../domain/money.js'

export const TransferBody = Type.Object({
  fromUserId: UserId,
  toUserId: UserId,
  amount: Type.Integer({ minimum: 1, maximum: MAX_BALANCE, description: 'Positive integer in the smallest unit', examples: [250] }),
  metadata: Type.Optional(Metadata),
}, { additionalProperties: false, examples: [{ fromUserId: 1, toUserId: 2, amount: 250 }] })
export type TransferBody = Static<typeof TransferBody>

const TransferSide = Type.Object({ userId: UserId, balance: Balance })

export const TransferResponse = Type.Object({
  transferId: Type.String({ format: 'uuid', description: 'Shared by the two journal entries of this transfer' }),
  from: TransferSide,
  to: TransferSide,
}, {
  description: 'The transfer was applied; both balances are the ones after it',
  examples: [{ transferId: '6f1c2a4e-8d3b-4f7a-9c1e-2b5d7e9f0a13', from: { userId: 1, balance: 9900 }, to: { userId: 2, balance: 100 } }],
})

export const transferSchema = {
  summary: 'Move money between two users',
  description: 'Both balance updates and both journal entries (transfer-out on the sender, transfer-in on the receiver) ' +
    'commit together or not at all. 409 INSUFFICIENT_FUNDS names the sender, 409 BALANCE_LIMIT_EXCEEDED the receiver; ' +
    '400 SAME_USER_TRANSFER when both sides are one user.',
  tags: ['transfers'],
  headers: IdempotencyHeaders,
  body: TransferBody,
  response: {
    201: TransferResponse,
    400: badRequest,
    404: userNotFound,
    409: BalanceConflictResponse,
    422: errorRef,
    ...commonErrors,
  },
}
