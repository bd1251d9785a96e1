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
 * Use it only for one-statement autocommit work on the hot path; other single statements go through boundedQuery
 * (src/db/pooler.ts), which is sequelize.query() directly connected and this function's pooler form behind PgBouncer.
 *
 * Behind PgBouncer in transaction mode (DB_POOLER=pgbouncer-transaction, set once per Sequelize by useHotQueryPooler)
 * each call is instead ONE simple-protocol query string, still one round trip and one implicit transaction:
 *   SELECT set_config('statement_timeout', …, true), set_config('lock_timeout', …, true), …; <text, values inlined>
 * No statement name (1.18 hands each transaction any server connection: a named statement is there twice or
 * missing), and the timeouts are set LOCAL on whichever server connection runs it, whatever that connection's history
 * (PgBouncer 1.18 drops or refuses them as startup parameters). PostgreSQL ≥ 13 times each statement of a
 * multi-statement string separately, so the SELECT after the set_config runs under the new statement_timeout.
 * Values are inlined as quoted literals (pg's escapeLiteral), which PostgreSQL types exactly like pg's untyped
 * parameters: texts given to hotQuery must not contain `$n` anywhere but as a parameter.
 */
export interface HotStatement {
  /** Prepared-statement name: unique per SQL text. */
  name: string
  text: string
}

interface PgConnection {
  query: <R>(config: { name: string, text: string, values: unknown[] } | string) => Promise<{ rows: R[] }>
  _invalid?: boolean
}

interface DialectQuery {
  formatError: (error: unknown, stack?: string) => Error
}

type QueryClass = new (connection: unknown, sequelize: Sequelize, options: Record<string, unknown>) => DialectQuery

/**
 * Opening a connection can time out (DB_CONNECT_TIMEOUT_MS) when the pool must open one during a burst (the pool is
 * opened at boot, but a broken connection is replaced on demand): the event loop is busy accepting thousands of sockets
 * while the handshake waits. Seen in test/system/burst.test.ts under machine load: 6–8 of 10,000
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

interface PooledMode {
  /** The set_config prefix, ending in '; '. */
  prefix: string
}

const pooled = new WeakMap<Sequelize, PooledMode>()

/**
 * Switches hotQuery on this Sequelize to the pooler-safe form (see above), with the three timeouts set LOCAL on
 * every call. Called once at boot by the database plugin when DB_POOLER=pgbouncer-transaction.
 */
export function useHotQueryPooler (sequelize: Sequelize, timeouts: { statementMs: number, lockMs: number, idleInTransactionMs: number }): void {
  const set = (name: string, ms: number): string => `set_config('${name}', '${Math.trunc(ms)}', true)`
  pooled.set(sequelize, {
    prefix: `SELECT ${set('statement_timeout', timeouts.statementMs)}, ${set('lock_timeout', timeouts.lockMs)}, ` +
      `${set('idle_in_transaction_session_timeout', timeouts.idleInTransactionMs)}; `,
  })
}

/** True once useHotQueryPooler switched this Sequelize to the pooler-safe form. */
export function isPooled (sequelize: Sequelize): boolean {
  return pooled.has(sequelize)
}

/** One value as a SQL literal typed like an untyped bind parameter: NULL, or a quoted string PostgreSQL resolves. */
export function toLiteral (value: unknown): string {
  if (value === null || value === undefined) return 'NULL'
  if (typeof value === 'number' || typeof value === 'bigint') {
    if (typeof value === 'number' && !Number.isFinite(value)) throw new TypeError(`hotQuery: cannot send ${value}`)
    return `'${String(value)}'`
  }
  if (typeof value === 'boolean') return value ? "'true'" : "'false'"
  if (typeof value === 'string') return pg.escapeLiteral(value)
  if (Array.isArray(value)) return pg.escapeLiteral(toArrayText(value))
  throw new TypeError(`hotQuery: cannot inline a ${Object.prototype.toString.call(value)} behind a pooler`)
}

function toArrayText (items: unknown[]): string {
  return `{${items.map((item) => {
    if (item === null || item === undefined) return 'NULL'
    if (Array.isArray(item)) return toArrayText(item)
    if (typeof item === 'number' || typeof item === 'bigint' || typeof item === 'boolean' || typeof item === 'string') {
      return `"${String(item).replace(/[\\"]/g, (c) => `\\${c}`)}"`
    }
    throw new TypeError('hotQuery: array items must be numbers, strings, booleans or null')
  }).join(',')}}`
}

/** The statement as one simple-protocol string: $n replaced by the literal of values[n-1]. */
export function inlineStatement (text: string, values: unknown[]): string {
  return text.replace(/\$(\d+)/g, (_, n: string) => {
    const index = Number(n) - 1
    if (index >= values.length) throw new RangeError(`hotQuery: $${n} has no value`)
    return toLiteral(values[index])
  })
}

export async function hotQuery<T> (sequelize: Sequelize, statement: HotStatement, values: unknown[]): Promise<T[]> {
  const mode = pooled.get(sequelize)
  const connection = await acquire(sequelize)
  try {
    if (mode === undefined) return (await connection.query<T>({ name: statement.name, text: statement.text, values })).rows
    const results = await connection.query<T>(mode.prefix + inlineStatement(statement.text, values)) as unknown as Array<{ rows: T[] }>
    return results[results.length - 1]!.rows
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
