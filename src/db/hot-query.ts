import pg from 'pg'
import { ConnectionAcquireTimeoutError, ConnectionError, type Sequelize } from 'sequelize'

/**
 * The hot path's single statement per balance change, run on Sequelize's own pool and connections
 * (sequelize.connectionManager: same config, same limits, same acquire timeout, same life cycle)
 * but without sequelize.query()'s per-call machinery: option merging, the retry wrapper, four async hooks,
 * re-formatting the bind parameters with a regex, a stack-capturing `new Error()`, building the log string.
 *
 * Why: on the 2-core box PostgreSQL shares with the service, that machinery was about 40 % of the client CPU of a change.
 * Measured with the advisory SQL, 100 concurrent callers, pool 10, six interleaved rounds of 4,000 calls (Node CPU per call):
 * sequelize.query() 128–180 µs (median ≈ 146), this function 74–97 µs (≈ 91), bare pg.Pool 74–96 µs (≈ 81).
 * In the service's 10k burst the server's CPU fell from ≈ 6.1 s to ≈ 5.1 s (medians of 3 interleaved runs).
 *
 * It is also a named prepared statement: PostgreSQL parses and plans it once per connection instead of on every call.
 * Errors come out exactly as sequelize.query() throws them (the dialect's own formatError), and a connection that
 * may have broken mid-query is marked invalid, so the pool replaces it.
 * Use it only for one-statement autocommit work on the hot path; everything else goes through sequelize.query().
 * (Named statements need session pooling: behind PgBouncer in transaction mode use PgBouncer ≥ 1.21 with prepared statements on.)
 */
export interface HotStatement {
  /** Prepared-statement name: unique per SQL text. */
  name: string
  text: string
}

interface PgConnection {
  query: <R>(config: { name: string, text: string, values: unknown[] }) => Promise<{ rows: R[] }>
  _invalid?: boolean
}

interface DialectQuery {
  formatError: (error: unknown, stack?: string) => Error
}

type QueryClass = new (connection: unknown, sequelize: Sequelize, options: Record<string, unknown>) => DialectQuery

/**
 * Opening a connection can time out (DB_CONNECT_TIMEOUT_MS) when the pool must open one during a burst (the pool is
 * opened at boot, but a broken connection is replaced on demand): the event loop is busy accepting thousands of sockets
 * while the handshake waits. Seen in test/burst.test.ts under machine load: 6–8 of 10,000
 * requests answered 503. Nothing has been sent to PostgreSQL at that point, so asking again is safe; a server that is really
 * unreachable still fails fast (refused) or after CONNECT_ATTEMPTS timeouts.
 */
const CONNECT_ATTEMPTS = 3

function isConnectTimeout (error: unknown): boolean {
  if (!(error instanceof ConnectionError) || error instanceof ConnectionAcquireTimeoutError) return false
  const parent = (error as { parent?: unknown }).parent
  const message = parent instanceof Error ? parent.message : error.message
  return /timeout expired|connection timeout/i.test(message)
}

async function acquire (sequelize: Sequelize): Promise<PgConnection> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await sequelize.connectionManager.getConnection({ type: 'write' }) as PgConnection
    } catch (error) {
      if (attempt >= CONNECT_ATTEMPTS || !isConnectTimeout(error)) throw error
    }
  }
}

export async function hotQuery<T> (sequelize: Sequelize, statement: HotStatement, values: unknown[]): Promise<T[]> {
  const connection = await acquire(sequelize)
  try {
    const result = await connection.query<T>({ name: statement.name, text: statement.text, values })
    return result.rows
  } catch (error) {
    // PostgreSQL's own errors (SQLSTATE) leave the connection usable; anything else (reset, read timeout, a value pg
    // could not serialise) may leave it mid-protocol: the pool throws it away (Sequelize marks it the same way).
    if (!(error instanceof pg.DatabaseError)) connection._invalid = true
    const Query = (sequelize as unknown as { dialect: { Query: QueryClass } }).dialect.Query
    throw new Query(connection, sequelize, {}).formatError(error, new Error().stack)
  } finally {
    sequelize.connectionManager.releaseConnection(connection)
  }
}
