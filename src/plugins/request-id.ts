import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import fp from 'fastify-plugin'
import { limits } from '../limits.js'

export const REQUEST_ID_HEADER = 'x-request-id'

/** 1..requestIdMaxLength visible ASCII characters: safe to log and to echo in a header. */
const SANE_REQUEST_ID = new RegExp(`^[\\x21-\\x7E]{1,${limits.requestIdMaxLength}}$`)

/**
 * Fastify's `genReqId`: the caller's `x-request-id` when it is sane (so a request can be followed across
 * services), a fresh UUID otherwise. Fastify puts it on every log line of the request as `reqId`.
 */
export function genReqId (request: IncomingMessage): string {
  const incoming = request.headers[REQUEST_ID_HEADER]
  return typeof incoming === 'string' && SANE_REQUEST_ID.test(incoming) ? incoming : randomUUID()
}

/** Echoes the request id on every response (404s and errors included) as `x-request-id`. */
export default fp(async function requestId (fastify) {
  fastify.addHook('onRequest', (request, reply, done) => {
    reply.header(REQUEST_ID_HEADER, request.id)
    done()
  })
}, { name: 'request-id' })
