import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { changeBalanceSchema } from '../schemas/balance.js'
import { replyAnswer } from './reply-answer.js'

const balanceRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.patch('/balance', { schema: changeBalanceSchema }, async (request, reply) => {
    const key = request.headers['idempotency-key']
    // Without a key, the hot path: the strategy's one statement and nothing else.
    if (key === undefined) return await fastify.balanceService.change(request.body)
    return replyAnswer(reply, 200, await fastify.balanceService.changeOnce(request.body, key))
  })
}
export default balanceRoutes
