import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { getUserSchema } from '../schemas/users.js'

const userRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get('/users/:id', { schema: getUserSchema }, async (request) => {
    const user = await fastify.balanceService.getUser(request.params.id)
    return { ...user, createdAt: user.createdAt.toISOString(), updatedAt: user.updatedAt.toISOString() }
  })
}
export default userRoutes
