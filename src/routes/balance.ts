import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { changeBalanceSchema } from '../schemas/balance.js'

const balanceRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.patch('/balance', { schema: changeBalanceSchema }, async (request) => {
    return await fastify.balanceService.change(request.body)
  })
}
export default balanceRoutes
