import pg from 'pg'
import { isDatabaseUnavailable } from '../src/db/errors.js'

/**
 * The soak's own connection (checker, fault injector): one pg.Client that survives the database going away.
 * A query that fails because the connection is lost (a terminated backend, a primary killed under HAProxy, a
 * failover in progress) drops the client, connects again and runs the query again, for at most `retryForMs`;
 * anything else (a SQL error) is thrown at once. Only for reads and idempotent statements.
 */
const CONNECT_TIMEOUT_MS = 3000
const QUERY_TIMEOUT_MS = 60_000
const RETRY_PAUSE_MS = 500

export class ResilientClient {
  /** Connections opened again after one was lost. */
  reconnects = 0
  private client: pg.Client | undefined
  private connecting: Promise<pg.Client> | undefined

  constructor (
    private readonly url: string,
    private readonly applicationName: string,
    private readonly log: (line: string) => void,
    private readonly retryForMs = 90_000,
  ) {}

  private async connected (): Promise<pg.Client> {
    if (this.client !== undefined) return this.client
    this.connecting ??= (async () => {
      const client = new pg.Client({ connectionString: this.url, application_name: this.applicationName, connectionTimeoutMillis: CONNECT_TIMEOUT_MS, query_timeout: QUERY_TIMEOUT_MS, keepAlive: true })
      // A lost idle connection is not a crash: the next query notices and reconnects.
      client.on('error', (error) => {
        this.log(`${this.applicationName} connection error: ${error.message}`)
        if (this.client === client) this.client = undefined
      })
      try {
        await client.connect()
      } catch (error) {
        await client.end().catch(() => {})
        throw error
      }
      this.client = client
      return client
    })().finally(() => { this.connecting = undefined })
    return await this.connecting
  }

  async query<T extends pg.QueryResultRow = pg.QueryResultRow> (config: string | pg.QueryConfig): Promise<pg.QueryResult<T>>
  async query<T extends unknown[]> (config: pg.QueryArrayConfig): Promise<pg.QueryArrayResult<T>>
  async query (config: string | pg.QueryConfig | pg.QueryArrayConfig): Promise<pg.QueryResult | pg.QueryArrayResult> {
    const deadline = Date.now() + this.retryForMs
    for (let attempt = 1; ; attempt += 1) {
      let client: pg.Client | undefined
      try {
        client = await this.connected()
        return await client.query(config as pg.QueryConfig)
      } catch (error) {
        if (!lostConnection(error) || Date.now() > deadline) throw error
        if (client !== undefined && this.client === client) {
          this.client = undefined
          await client.end().catch(() => {})
        }
        if (attempt === 1) this.log(`${this.applicationName}: ${(error as Error).message}; connecting again`)
        this.reconnects += 1
        await new Promise((resolve) => setTimeout(resolve, RETRY_PAUSE_MS))
      }
    }
  }

  async end (): Promise<void> {
    const client = this.client
    this.client = undefined
    await client?.end().catch(() => {})
  }
}

/** The connection (or the server behind it) went away; 25006: a standby answered read-only after a switchover. */
function lostConnection (error: unknown): boolean {
  if (isDatabaseUnavailable(error)) return true
  const code = (error as { code?: unknown }).code
  if (code === '25006') return true
  return /timeout|terminat|ECONNREFUSED|ECONNRESET|read-only/i.test(error instanceof Error ? error.message : '')
}
