import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { HOLDS_PAGE_DEFAULT, captureHoldSchema, createHoldSchema, getHoldSchema, userHoldsSchema, voidHoldSchema } from '../schemas/holds.js'
import type { HoldAnswer } from '../services/hold-answers.js'
import type { HoldView } from '../strategies/types.js'
import { replyAnswer } from './reply-answer.js'

export function holdJson (hold: HoldView): Record<string, unknown> {
  return {
    ...hold,
    expiresAt: hold.expiresAt.toISOString(),
    createdAt: hold.createdAt.toISOString(),
    settledAt: hold.settledAt === null ? null : hold.settledAt.toISOString(),
  }
}

function holdWriteJson (answer: HoldAnswer): Record<string, unknown> {
  return { ...holdJson(answer.hold), balance: answer.balance, held: answer.held, available: answer.available, entryId: answer.entryId, payee: answer.payee }
}

const holdRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.post('/holds', { schema: createHoldSchema }, async (request, reply) => {
    const answer = await fastify.balanceService.createHold(request.body, request.headers['idempotency-key'])
    return replyAnswer(reply, 201, { ...answer, value: holdWriteJson(answer.value) })
  })

  fastify.post('/holds/:holdId/capture', { schema: captureHoldSchema }, async (request, reply) => {
    const answer = await fastify.balanceService.captureHold(request.params.holdId, request.body ?? {}, request.headers['idempotency-key'])
    return replyAnswer(reply, 200, { ...answer, value: holdWriteJson(answer.value) })
  })

  fastify.post('/holds/:holdId/void', { schema: voidHoldSchema }, async (request, reply) => {
    const answer = await fastify.balanceService.voidHold(request.params.holdId, request.headers['idempotency-key'])
    return replyAnswer(reply, 200, { ...answer, value: holdWriteJson(answer.value) })
  })

  fastify.get('/holds/:holdId', { schema: getHoldSchema }, async (request) => {
    return holdJson(await fastify.balanceService.getHold(request.params.holdId))
  })

  fastify.get('/users/:id/holds', { schema: userHoldsSchema }, async (request) => {
    const { status, limit, before } = request.query
    const page = await fastify.balanceService.userHolds(request.params.id, {
      limit: limit ?? HOLDS_PAGE_DEFAULT,
      ...(status === undefined ? {} : { status }),
      ...(before === undefined ? {} : { before }),
    })
    return { items: page.items.map(holdJson), nextCursor: page.nextCursor }
  })
}
export default holdRoutes
