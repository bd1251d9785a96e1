import { Type, type Static } from 'typebox'
import { Balance, UserId, commonErrors, errorRef } from './common.js'

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
