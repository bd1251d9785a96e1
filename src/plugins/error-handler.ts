import { STATUS_CODES } from 'node:http'
import fp from 'fastify-plugin'
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import { BulkRefusedError, DomainError, OverloadedError } from '../domain/errors.js'

/** The one table from domain error codes to HTTP statuses. */
const STATUS_BY_CODE: Record<string, number> = {
  SAME_USER_TRANSFER: 400,
  SAME_USER_CAPTURE: 400,
  HOLD_EXPIRY_TOO_LONG: 400,
  INVALID_CURSOR: 400,
  BULK_ITEM_KEY_IN_ATOMIC: 400,
  BULK_KEY_NEEDS_ATOMIC: 400,
  BULK_TOO_MANY_CHANGES: 413,
  BULK_REFUSED: 409,
  USER_NOT_FOUND: 404,
  HOLD_NOT_FOUND: 404,
  INSUFFICIENT_FUNDS: 409,
  BALANCE_LIMIT_EXCEEDED: 409,
  HOLD_NOT_ACTIVE: 409,
  HOLD_EXPIRED: 409,
  CAPTURE_EXCEEDS_HOLD: 409,
  IDEMPOTENCY_KEY_REUSED: 422,
  CURSOR_EXPIRED: 410,
  DB_UNAVAILABLE: 503,
  OVERLOADED: 503,
}

/** The standard error body `{statusCode, code, error, message}`. */
export function errorBody (statusCode: number, code: string, message: string): { statusCode: number, code: string, error: string, message: string } {
  return { statusCode, code, error: STATUS_CODES[statusCode] ?? 'Error', message }
}

/**
 * A domain error's status and body: the standard shape plus the figures that explain it. A refused atomic bulk
 * request also carries `item`, the answer its first refused change would have got alone (`status` and body).
 */
export function domainErrorAnswer (error: DomainError): { statusCode: number, payload: Record<string, unknown> } {
  const statusCode = STATUS_BY_CODE[error.code] ?? 500
  const payload: Record<string, unknown> = { ...errorBody(statusCode, error.code, error.message), ...error.details() }
  if (error instanceof BulkRefusedError) {
    const item = domainErrorAnswer(error.refusal)
    payload.index = error.index
    payload.item = { status: item.statusCode, ...item.payload }
  }
  return { statusCode, payload }
}

/**
 * Fastify's `frameworkErrors`: errors the router raises before any hook runs (a malformed URL, a path parameter over
 * limits.maxParamLength), answered in the standard shape with the right reason phrase and the request id.
 */
export function frameworkErrors (error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const statusCode = error.statusCode ?? 400
  void reply.code(statusCode).header('x-request-id', request.id).send(errorBody(statusCode, error.code, error.message))
}

/**
 * Maps every error to Fastify's shape `{statusCode, code, error, message}`. Domain errors by the table above;
 * client errors (4xx from Fastify: validation, bad JSON, body too large) keep their code; anything else is a bug:
 * logged in full, answered with a 500 that reveals nothing.
 */
export default fp(async function errorHandler (fastify) {
  fastify.setErrorHandler(async (error: FastifyError | DomainError, request, reply) => {
    if (error instanceof DomainError) {
      const { statusCode, payload } = domainErrorAnswer(error)
      if (statusCode >= 500) request.log.warn({ err: error.cause ?? error }, error.message)
      if (error.replayed) void reply.header('Idempotent-Replayed', 'true')
      if (error instanceof OverloadedError) void reply.header('Retry-After', String(error.retryAfterSeconds))
      return await reply.code(statusCode).send(payload)
    }
    const statusCode = error.statusCode ?? 500
    if (statusCode >= 400 && statusCode < 500) {
      return await reply.code(statusCode).send(errorBody(statusCode, error.code ?? 'BAD_REQUEST', error.message))
    }
    request.log.error({ err: error }, 'unhandled error')
    return await reply.code(500).send(errorBody(500, 'INTERNAL_ERROR', 'Internal Server Error'))
  })

  fastify.setNotFoundHandler(async (request, reply) => {
    return await reply.code(404).send(errorBody(404, 'ROUTE_NOT_FOUND', `Route ${request.method} ${request.url.split('?')[0]} not found`))
  })
}, { name: 'error-handler' })
