import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { transferSchema } from '../schemas/transfers.js'
import { replyAnswer } from './reply-answer.js'

const transferRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.post('/transfers', { schema: transferSchema }, async (request, reply) => {
    return replyAnswer(reply, 201, await fastify.balanceService.transfer(request.body, request.headers['idempotency-key']))
  })
}
export default transferRoutes
