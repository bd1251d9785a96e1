import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { EVENTS_PAGE_DEFAULT, eventsSchema, userEventsSchema } from '../schemas/events.js'

const eventRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get('/events', { schema: eventsSchema }, async (request) => {
    const { after, limit } = request.query
    // limit has a schema default; the fallback only satisfies the optional type.
    return await fastify.events.feed.page(after, limit ?? EVENTS_PAGE_DEFAULT)
  })

  fastify.get('/users/:id/events', { schema: userEventsSchema }, async (request) => {
    const { after, limit } = request.query
    return await fastify.events.feed.userPage(request.params.id, after, limit ?? EVENTS_PAGE_DEFAULT)
  })
}
export default eventRoutes
