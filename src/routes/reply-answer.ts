import type { FastifyReply } from 'fastify'
import type { Answer } from '../services/idempotency.js'

/** Sends a write's answer; a replay from an idempotency key says so in `Idempotent-Replayed: true`. */
export function replyAnswer<T> (reply: FastifyReply, statusCode: number, answer: Answer<T>): FastifyReply {
  if (answer.replayed) void reply.header('Idempotent-Replayed', 'true')
  return reply.code(statusCode).send(answer.value)
}
