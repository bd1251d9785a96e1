import pg from 'pg'
import { guardedPg } from '../db/guarded-pg.js'
import { inlineStatement } from '../db/hot-query.js'

/**
 * The one PostgreSQL connection a background part of the events (the publisher, the pruner) runs on: its own, never a
 * pooled one a request could be waiting for. Every statement is in the pooler-safe form (its timeouts LOCAL to its
 * own transaction, values inlined), so it behaves the same straight to PostgreSQL and behind PgBouncer in transaction
 * mode. A terminated backend or a lost server drops the client; the next statement opens a new one.
 */
export interface SideConnectionOptions {
  database: pg.ClientConfig
  applicationName: string
  connectTimeoutMs: number
  /** statement_timeout and lock_timeout of every statement; the client gives up 2 s after it. */
  statementTimeoutMs: number
  /**
   * Through the guarded client: a commit whose wait for the synchronous standby was cancelled fails its statement
   * instead of passing with a warning (src/db/guarded-pg.ts).
   */
  guarded: boolean
  /** Run once on every new connection before it is used (it may fail the connection). */
  onConnect?: (client: pg.Client) => Promise<void>
}

/** The client's own deadline past the server's: the server's timeout answers first when the server is there. */
const CLIENT_TIMEOUT_MARGIN_MS = 2_000

export class SideConnection {
  private client: pg.Client | undefined

  constructor (private readonly options: SideConnectionOptions) {}

  /** One statement (several separated by `;` run as one implicit transaction); the rows of the last. */
  async query<T> (text: string, values: unknown[]): Promise<T[]> {
    const ms = this.options.statementTimeoutMs
    const prefix = `SELECT set_config('statement_timeout', '${ms}', true), set_config('lock_timeout', '${ms}', true); `
    const client = await this.connected()
    const results = await client.query(prefix + inlineStatement(text, values)) as unknown as pg.QueryResult[]
    return results[results.length - 1]!.rows as T[]
  }

  async close (): Promise<void> {
    const client = this.client
    this.client = undefined
    await client?.end().catch(() => {})
  }

  private async connected (): Promise<pg.Client> {
    if (this.client !== undefined) return this.client
    const Client = this.options.guarded ? guardedPg.Client : pg.Client
    const client = new Client({
      ...this.options.database,
      application_name: this.options.applicationName,
      connectionTimeoutMillis: this.options.connectTimeoutMs,
      query_timeout: this.options.statementTimeoutMs + CLIENT_TIMEOUT_MARGIN_MS,
      keepAlive: true,
    })
    client.on('error', () => {
      if (this.client === client) this.client = undefined
      void client.end().catch(() => {})
    })
    try {
      await client.connect()
      await this.options.onConnect?.(client)
    } catch (error) {
      await client.end().catch(() => {})
      throw error
    }
    this.client = client
    return client
  }
}
