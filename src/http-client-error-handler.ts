import { STATUS_CODES } from 'node:http'
import type { Socket } from 'node:net'

/**
 * Answers HTTP errors that happen before a request exists: a request line or header the parser refuses, headers over
 * the size limit, a request that took too long to arrive. Fastify's default answers these with
 * `{error, message, statusCode}` and no `code`, so a client could not branch on them as the contract promises
 * (found by test/system/fuzz.test.ts). Same statuses as Fastify's default; `code` is Node's own stable error code
 * (HPE_HEADER_OVERFLOW, HPE_INVALID_HEADER_TOKEN, ERR_HTTP_REQUEST_TIMEOUT, …).
 */
export function clientErrorHandler (error: Error & { code?: string }, socket: Socket): void {
  // A reset connection has nobody to answer.
  if (error.code === 'ECONNRESET' || socket.destroyed) return
  const statusCode = error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : error.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400
  const code = typeof error.code === 'string' && /^(HPE_|ERR_HTTP_)[A-Z_]+$/.test(error.code) ? error.code : 'BAD_REQUEST'
  const label = STATUS_CODES[statusCode] ?? 'Bad Request'
  const body = JSON.stringify({ statusCode, code, error: label, message: `${label}: the request could not be read as HTTP (${code})` })
  if (socket.writable) {
    socket.write(`HTTP/1.1 ${statusCode} ${label}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nContent-Type: application/json; charset=utf-8\r\nConnection: close\r\n\r\n${body}`)
  }
  socket.destroy()
}
