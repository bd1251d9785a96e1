import { BaseError, ConnectionError, DatabaseError, TimeoutError } from 'sequelize'

/**
 * SQLSTATE classes and node errors that mean "the database is not there (or stopped answering)", not "your request
 * was wrong". 08: connection exception (PgBouncer uses 08P01 for the connections it closes); 53: insufficient
 * resources; 57P01-57P03: admin shutdown, crash shutdown, cannot connect now; 57014: statement timeout or cancel;
 * 55P03: lock not available (lock_timeout); 25006: read-only transaction (a standby, or a primary demoted by a
 * switchover, answering a write); 40001/40P01 are not here: our writes neither serialize nor deadlock.
 */
const UNAVAILABLE_SQLSTATE = /^(08|53|57P0|57014|55P03|25006)/
/**
 * Node's socket and name-lookup errors: each says the network or the server is not there, never that the request was
 * wrong. Refused, reset, broken pipe, timed out; no route to the host or its network (EHOSTUNREACH, ENETUNREACH), the
 * host or the local network down (EHOSTDOWN, ENETDOWN), the connection aborted or reset by the network (ECONNABORTED,
 * ENETRESET), no local address or port left to connect from (EADDRNOTAVAIL), no such name or the resolver failing
 * (ENOTFOUND, EAI_AGAIN). And CommitUnconfirmedError (src/db/guarded-pg.ts): committed locally, not confirmed.
 */
const UNAVAILABLE_NODE_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT',
  'EHOSTUNREACH', 'EHOSTDOWN', 'ENETUNREACH', 'ENETDOWN', 'ENETRESET', 'EADDRNOTAVAIL',
  'ENOTFOUND', 'EAI_AGAIN',
  'COMMIT_UNCONFIRMED',
])
/**
 * pg's own messages for a connection it gave up on: cut (terminated, closed), or no answer within query_timeout
 * ("Query read timeout": the client-side bound past DB_STATEMENT_TIMEOUT_MS, e.g. a commit waiting for a synchronous
 * standby, which statement_timeout does not cover).
 */
const UNAVAILABLE_MESSAGE = /Connection terminated|connection is closed|Client has encountered a connection error|not queryable|Query read timeout|server closed the connection unexpectedly/i

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
  return UNAVAILABLE_MESSAGE.test(message)
}
