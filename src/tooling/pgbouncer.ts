import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { chown, mkdtemp, rm, writeFile } from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import pg from 'pg'
import { freePort } from './ports.js'
import type { SystemTool } from './system-tool.js'

/**
 * A real PgBouncer (the Debian package) for tests and the bench: its own config and auth file in a temporary folder, its own free
 * loopback port, TCP only (`unix_socket_dir =` empty), transaction pooling, and exactly the one
 * `ignore_startup_parameters` a stock setup has. It runs in the foreground as a child of the test (as the `postgres`
 * user when the test runs as root: PgBouncer refuses to run as root), so the test owns its life: stop() / kill().
 */
export const PGBOUNCER: SystemTool = { path: '/usr/sbin/pgbouncer', aptPackage: 'pgbouncer' }

const START_TIMEOUT_MS = 10_000
const STOP_TIMEOUT_MS = 5_000
const LOG_TAIL_LINES = 200

export interface PgBouncerOptions {
  /** The PostgreSQL behind it. */
  host: string
  port: number
  /** Server connections per database/user pair (default_pool_size). */
  poolSize?: number
  /** Listen here (e.g. to start it again where its clients expect it); a free port otherwise. */
  listenPort?: number
  /** More [pgbouncer] settings, e.g. { server_lifetime: '1' }. */
  settings?: Record<string, string>
}

export interface PgBouncer {
  port: number
  /** `url` with host and port replaced by this PgBouncer's. */
  via: (url: string) => string
  /** One statement on the admin console (SHOW …, KILL db, RECONNECT db, …). */
  admin: <T = Record<string, unknown>>(command: string) => Promise<T[]>
  /** SIGTERM and wait (idempotent). */
  stop: () => Promise<void>
  /** SIGKILL and wait: every client and server connection is cut at once. */
  kill: () => Promise<void>
  /** The last lines PgBouncer logged. */
  log: () => string
}

function runAsIds (): { uid: number, gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined
  return {
    uid: Number(execFileSync('id', ['-u', 'postgres']).toString().trim()),
    gid: Number(execFileSync('id', ['-g', 'postgres']).toString().trim()),
  }
}

async function waitForPort (port: number, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`pgbouncer exited at start: ${log()}`)
    const up = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => { socket.destroy(); resolve(true) })
      socket.once('error', () => { resolve(false) })
    })
    if (up) return
    if (Date.now() > deadline) throw new Error(`pgbouncer did not listen in ${START_TIMEOUT_MS} ms: ${log()}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

export async function startPgBouncer (options: PgBouncerOptions): Promise<PgBouncer> {
  const ids = runAsIds()
  const dir = await mkdtemp(path.join(os.tmpdir(), 'balance-pgbouncer-'))
  const port = options.listenPort ?? await freePort()
  const settings: Record<string, string> = {
    listen_addr: '127.0.0.1',
    listen_port: String(port),
    unix_socket_dir: '',
    auth_type: 'trust',
    auth_file: path.join(dir, 'userlist.txt'),
    admin_users: 'postgres',
    pool_mode: 'transaction',
    ignore_startup_parameters: 'extra_float_digits',
    default_pool_size: String(options.poolSize ?? 20),
    max_client_conn: '500',
    ...options.settings,
  }
  const ini = [
    '[databases]',
    `* = host=${options.host} port=${options.port}`,
    '[pgbouncer]',
    ...Object.entries(settings).map(([key, value]) => `${key} = ${value}`),
    '',
  ].join('\n')
  await writeFile(path.join(dir, 'pgbouncer.ini'), ini)
  await writeFile(path.join(dir, 'userlist.txt'), '"postgres" ""\n')
  if (ids !== undefined) {
    for (const file of ['', 'pgbouncer.ini', 'userlist.txt']) await chown(path.join(dir, file), ids.uid, ids.gid)
  }

  const child = spawn(PGBOUNCER.path, [path.join(dir, 'pgbouncer.ini')], { ...ids, stdio: ['ignore', 'ignore', 'pipe'] })
  const tail: string[] = []
  child.stderr?.on('data', (chunk: Buffer) => {
    for (const line of chunk.toString().split('\n').filter(Boolean)) {
      tail.push(line)
      if (tail.length > LOG_TAIL_LINES) tail.shift()
    }
  })
  const log = (): string => tail.join('\n')
  // If the test process dies (an uncaught error skips teardown), its PgBouncer must not outlive it.
  const killOnExit = (): void => { child.kill('SIGKILL') }
  process.once('exit', killOnExit)
  const exited = new Promise<void>((resolve) => { child.once('exit', () => { process.removeListener('exit', killOnExit); resolve() }) })
  const end = async (signal: NodeJS.Signals): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill(signal)
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS)
      await exited
      clearTimeout(timer)
    }
    await rm(dir, { recursive: true, force: true })
  }
  try {
    await waitForPort(port, child, log)
  } catch (error) {
    await end('SIGKILL')
    throw error
  }
  return {
    port,
    via: (url) => {
      const parsed = new URL(url)
      parsed.hostname = '127.0.0.1'
      parsed.port = String(port)
      return parsed.toString()
    },
    admin: async <T>(command: string) => {
      const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'pgbouncer' })
      await client.connect()
      try {
        return (await client.query(command)).rows as T[]
      } finally {
        await client.end()
      }
    },
    stop: async () => { await end('SIGTERM') },
    kill: async () => { await end('SIGKILL') },
    log,
  }
}
