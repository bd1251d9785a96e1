import { Type, type Static } from 'typebox'
import { Balance, BalanceConflictResponse, IdempotencyHeaders, Metadata, UserId, badRequest, commonErrors, errorRef, userNotFound } from './common.js'

export const ChangeBody = Type.Object({
  userId: UserId,
  amount: Type.Integer({
    minimum: -Number.MAX_SAFE_INTEGER,
    maximum: Number.MAX_SAFE_INTEGER,
    not: Type.Literal(0),
    description: 'Non-zero integer in the smallest unit; negative takes money out',
    examples: [-2],
  }),
  metadata: Type.Optional(Metadata),
}, { additionalProperties: false, examples: [{ userId: 1, amount: -2 }] })
export type ChangeBody = Static<typeof ChangeBody>

export const ChangeResponse = Type.Object({
  userId: UserId,
  balance: Balance,
  amount: Type.Integer({ description: 'The amount applied, as sent', examples: [-2] }),
  entryId: Type.Integer({ minimum: 1, description: 'The journal entry this change wrote', examples: [2] }),
  available: Type.Optional(Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'balance − active holds after the change' })),
}, { description: 'The change was applied; `balance` is the balance after it', examples: [{ userId: 1, balance: 9998, amount: -2, entryId: 2 }] })

export const changeBalanceSchema = {
  summary: 'Change a balance',
  description: 'Adds `amount` (negative to take money out) to a user\'s balance, atomically, writing one journal entry. ' +
    'A balance never goes below 0 or above 2^53 − 1; a withdrawal may use only the available money (balance − active holds). With an `Idempotency-Key`, a retry replays the first answer.',
  tags: ['balance'],
  headers: IdempotencyHeaders,
  body: ChangeBody,
  response: {
    200: ChangeResponse,
    400: badRequest,
    404: userNotFound,
    409: BalanceConflictResponse,
    422: errorRef,
    ...commonErrors,
  },
}
