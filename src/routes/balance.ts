import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyBaseLogger } from 'fastify'
import { BulkItemKeyInAtomicError, BulkKeyNeedsAtomicError, BulkTooManyChangesError, DomainError } from '../domain/errors.js'
import { bulkBodyLimitBytes } from '../limits.js'
import { domainErrorAnswer, errorBody } from '../plugins/error-handler.js'
import { changeBalanceSchema } from '../schemas/balance.js'
import { bulkChangeSchema } from '../schemas/bulk.js'
import type { ItemResult } from '../services/balance-service.js'
import { replyAnswer } from './reply-answer.js'

/**
 * One change's entry in a bulk answer: `status` (what the change alone would have got) and exactly the body it would
 * have got, error bodies included; `replayed: true` stands in for the Idempotent-Replayed header.
 */
function itemEntry (result: ItemResult, log: FastifyBaseLogger): Record<string, unknown> {
  if (result.ok) return { status: 200, ...result.answer.value, ...(result.answer.replayed ? { replayed: true } : {}) }
  const { error } = result
  if (error instanceof DomainError) {
    const { statusCode, payload } = domainErrorAnswer(error)
    if (statusCode >= 500) log.warn({ err: error.cause ?? error }, error.message)
    return { status: statusCode, ...payload, ...(error.replayed ? { replayed: true } : {}) }
  }
  // A bug in one change fails that change only: its neighbours' answers (committed) still go out.
  log.error({ err: error }, 'unhandled error in a bulk change')
  return { status: 500, ...errorBody(500, 'INTERNAL_ERROR', 'Internal Server Error') }
}

const balanceRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  // Not an async function: the promise goes to Fastify as it is, so a request waiting for its batch keeps no
  // suspended frame here (see BalanceService.change).
  fastify.patch('/balance', { schema: changeBalanceSchema }, (request, reply) => {
    const key = request.headers['idempotency-key']
    // Without a key, the hot path: the strategy's one statement and nothing else.
    if (key === undefined) return fastify.balanceService.change(request.body)
    return fastify.balanceService.changeOnce(request.body, key).then((answer) => replyAnswer(reply, 200, answer))
  })

  const maxChanges = fastify.config.BULK_MAX_CHANGES
  fastify.post('/balance/batch', {
    schema: bulkChangeSchema(maxChanges),
    bodyLimit: bulkBodyLimitBytes(maxChanges),
    // Counted before validation, so an oversized list gets its own code and is not validated item by item.
    preValidation: async (request) => {
      const changes = (request.body as { changes?: unknown } | undefined)?.changes
      if (Array.isArray(changes) && changes.length > maxChanges) throw new BulkTooManyChangesError(changes.length, maxChanges)
    },
  }, async (request, reply) => {
    const { changes, atomic = false } = request.body
    const key = request.headers['idempotency-key']
    if (!atomic) {
      if (key !== undefined) throw new BulkKeyNeedsAtomicError()
      const results = await fastify.balanceService.changeEach(changes)
      return { results: results.map((result) => itemEntry(result, request.log)) }
    }
    const keyed = changes.findIndex((change) => change.idempotencyKey !== undefined)
    if (keyed >= 0) throw new BulkItemKeyInAtomicError(keyed)
    const answer = await fastify.balanceService.changeAll(changes, key)
    return replyAnswer(reply, 200, { ...answer, value: { results: answer.value.map((value) => ({ status: 200, ...value })) } })
  })
}
export default balanceRoutes
