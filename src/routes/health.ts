import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { healthSchema, livenessSchema } from '../schemas/health.js'

const healthRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get('/health', { schema: healthSchema }, async (_request, reply) => {
    const up = await fastify.balanceService.isDatabaseUp()
    return await reply.code(up ? 200 : 503).send(up ? { status: 'ok', db: 'up' } : { status: 'error', db: 'down' })
  })

  fastify.get('/health/live', { schema: livenessSchema }, async () => {
    return { status: 'ok' as const }
  })
}
export default healthRoutes
