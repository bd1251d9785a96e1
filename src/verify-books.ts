import { readFile } from 'node:fs/promises'
import path from 'node:path'
import pg from 'pg'
import type { Config } from './config.js'
import { checkBooks, formatReport } from './db/check-books.js'
import { startEmbeddedPostgres } from './db/embedded-postgres.js'
import { EMBEDDED_DATABASE, createSequelize } from './plugins/database.js'

/**
 * `npm run verify` (entry: src/verify.ts): checks the books of the database the service uses (DATABASE_URL, or the
 * embedded cluster in PGDATA_DIR) and prints a summary. Read-only: it never writes, so it is safe against a live service.
 */

/** A running embedded cluster (the service is up) writes its port on line 4 of postmaster.pid. */
export async function runningEmbeddedUrl (dataDir: string): Promise<string | undefined> {
  let pidFile: string
  try {
    pidFile = await readFile(path.join(path.resolve(dataDir), 'postmaster.pid'), 'utf8')
  } catch {
    return undefined
  }
  const port = Number(pidFile.split('\n')[3])
  if (!Number.isInteger(port) || port < 1 || port > 65535) return undefined
  const url = `postgres://postgres@127.0.0.1:${port}/${EMBEDDED_DATABASE}`
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 })
  try {
    await client.connect()
    return url
  } catch {
    return undefined // a stale pid file from a crash: start the cluster ourselves
  } finally {
    await client.end().catch(() => {})
  }
}

async function database (config: Config): Promise<{ url: string, stop: () => Promise<void> }> {
  if (config.DATABASE_URL !== undefined) return { url: config.DATABASE_URL, stop: async () => {} }
  const running = await runningEmbeddedUrl(config.PGDATA_DIR)
  if (running !== undefined) return { url: running, stop: async () => {} }
  const embedded = await startEmbeddedPostgres({ dataDir: config.PGDATA_DIR, database: EMBEDDED_DATABASE })
  return { url: embedded.url, stop: embedded.stop }
}

/** Exit codes: 0 every check passes; 1 a violation; 2 the books could not be read. */
export const VERIFY_OK = 0
export const VERIFY_VIOLATIONS = 1
export const VERIFY_ERROR = 2

/** Checks the books, prints the report through `print` (failures to check through `printError`); returns the exit code. */
export async function verifyBooks (
  config: Config,
  print: (text: string) => void = console.log,
  printError: (text: string) => void = console.error,
): Promise<number> {
  let target: { url: string, stop: () => Promise<void> }
  try {
    target = await database(config)
  } catch (error) {
    printError(`verify: could not reach the database: ${error instanceof Error ? error.message : String(error)}`)
    return VERIFY_ERROR
  }
  const { url, stop } = target
  const sequelize = createSequelize(url, config, () => {})
  try {
    const report = await checkBooks(sequelize)
    print(formatReport(report))
    return report.ok ? VERIFY_OK : VERIFY_VIOLATIONS
  } catch (error) {
    printError(`verify: could not check the books: ${error instanceof Error ? error.message : String(error)}`)
    return VERIFY_ERROR
  } finally {
    await sequelize.close()
    await stop()
  }
}
