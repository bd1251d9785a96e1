import { Type, type Static } from 'typebox'
import { Balance, UserId, badRequest, commonErrors, userNotFound } from './common.js'

export const UserParams = Type.Object({ id: UserId }, { additionalProperties: false })
export type UserParams = Static<typeof UserParams>

export const UserResponse = Type.Object({
  id: UserId,
  balance: Balance,
  createdAt: Type.String({ format: 'date-time', description: 'When the user was created' }),
  updatedAt: Type.String({ format: 'date-time', description: 'When the balance last changed' }),
}, {
  description: 'The user and its current balance',
  examples: [{ id: 1, balance: 10000, createdAt: '2025-01-01T00:00:00.000Z', updatedAt: '2025-01-01T00:00:00.000Z' }],
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
