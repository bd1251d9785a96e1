import { LogController, type FastifyReply, type FastifyRequest } from 'fastify'

/**
 * Per-request log lines at debug, not info: a 10k burst must not write 10k info lines (5,000 of them refusals,
 * which are ordinary business outcomes). Server errors (5xx) stay at error level.
 */
export class QuietRequestLogController extends LogController {
  override incomingRequest (request: FastifyRequest): void {
    request.log.debug({ req: request }, 'incoming request')
  }

  override requestCompleted (error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    if (error !== null && error !== undefined) {
      reply.log.error({ res: reply, err: error, responseTime: reply.elapsedTime }, 'request errored')
    } else if (reply.statusCode >= 500) {
      reply.log.warn({ res: reply, responseTime: reply.elapsedTime }, 'request completed with a server error')
    } else {
      reply.log.debug({ res: reply, responseTime: reply.elapsedTime }, 'request completed')
    }
  }
}
