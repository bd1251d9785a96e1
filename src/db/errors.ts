import { BaseError, ConnectionError, DatabaseError, TimeoutError } from 'sequelize'

/**
 * SQLSTATE classes and node errors that mean "the database is not there (or stopped answering)", not "your request
 * was wrong". 08: connection exception; 53: insufficient resources; 57P01-57P03: admin shutdown, crash shutdown,
 * cannot connect now; 57014: statement timeout or cancel; 55P03: lock not available (lock_timeout).
 */
const UNAVAILABLE_SQLSTATE = /^(08|53|57P0|57014|55P03)/
const UNAVAILABLE_NODE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', 'EAI_AGAIN'])

function codeOf (error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined
  const code = (error as { code?: unknown }).code
  return typeof code === 'string' ? code : undefined
}

export function isDatabaseUnavailable (error: unknown): boolean {
  if (error instanceof ConnectionError || error instanceof TimeoutError) return true
  const cause = error instanceof DatabaseError ? error.parent : error instanceof BaseError ? (error as { parent?: unknown }).parent : error
  const code = codeOf(cause) ?? codeOf(error)
  if (code !== undefined && (UNAVAILABLE_SQLSTATE.test(code) || UNAVAILABLE_NODE_CODES.has(code))) return true
  const message = error instanceof Error ? `${error.message} ${cause instanceof Error ? cause.message : ''}` : ''
  return /Connection terminated|connection is closed|Client has encountered a connection error|not queryable/i.test(message)
}
