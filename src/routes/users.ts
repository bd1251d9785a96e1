import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { HISTORY_PAGE_DEFAULT, balanceAtSchema, createUserSchema, getUserSchema, transactionsSchema } from '../schemas/users.js'
import type { UserView } from '../services/balance-service.js'
import { replyAnswer } from './reply-answer.js'

function userJson (user: UserView): { id: number, balance: number, held: number, available: number, createdAt: string, updatedAt: string } {
  return { id: user.id, balance: user.balance, held: user.held, available: user.available, createdAt: user.createdAt.toISOString(), updatedAt: user.updatedAt.toISOString() }
}

const userRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.post('/users', { schema: createUserSchema }, async (request, reply) => {
    const answer = await fastify.balanceService.createUser({ balance: request.body.balance ?? 0 }, request.headers['idempotency-key'])
    return replyAnswer(reply, 201, { ...answer, value: userJson(answer.value) })
  })

  fastify.get('/users/:id', { schema: getUserSchema }, async (request) => {
    return userJson(await fastify.balanceService.getUser(request.params.id))
  })

  fastify.get('/users/:id/transactions', { schema: transactionsSchema }, async (request) => {
    const { limit, before } = request.query
    // limit has a schema default; the fallback only satisfies the optional type.
    const page = await fastify.balanceService.history(request.params.id, { limit: limit ?? HISTORY_PAGE_DEFAULT, ...(before === undefined ? {} : { before }) })
    return { items: page.items.map((entry) => ({ ...entry, createdAt: entry.createdAt.toISOString() })), nextCursor: page.nextCursor }
  })

  fastify.get('/users/:id/balance', { schema: balanceAtSchema }, async (request) => {
    const at = new Date(request.query.at)
    const found = await fastify.balanceService.balanceAt(request.params.id, at)
    return { userId: request.params.id, at: at.toISOString(), ...found }
  })
}
export default userRoutes
