import { spawn } from 'node:child_process'
import { mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import pg from 'pg'
import { createThrowawayDatabase } from '../src/tooling/throwaway-database.js'
import { startChildServer, type ChildServer } from '../src/tooling/processes.js'
import { projectRoot, serverScript } from '../src/tooling/project-root.js'
import { floorScript } from './paths.js'

/**
 * What one request waiting for its group-commit batch keeps alive, from two heap snapshots of the production build:
 * one with nothing waiting (after two warm-up bursts), one with N requests waiting behind the user's advisory lock,
 * held by another session (the first request is in the database, blocked; the other N − 1 wait in its lane).
 * Each request is on its own socket, like the seed burst. The difference of the live heaps, divided by N, is the
 * heap per waiting request; the table splits it by constructor (V8 shows a suspended async function as Generator,
 * its registers as array, its await callbacks as anonymous closures).
 * With --floor the same is measured on the HTTP floor (bench/floor-server.mjs, no database): it parks every request
 * whose Idempotency-Key starts with FLOOR_PARK_KEY_PREFIX for FLOOR_PARK_MS, which is what Node and Fastify keep for
 * a waiting request by themselves.
 * Usage: npm run bench:memory [-- --requests 2000 --keyed --floor]   (DATABASE_URL: the server for a throwaway database)
 */

export interface MemoryOptions { requests: number, keyed: boolean, floor: boolean, top: number }

/** Long enough for the snapshot with N waiting to be written while they wait; short enough to end a failed run. */
const WAIT_LIMIT_MS = 120_000
/** After the burst client started: time for every request to connect and reach its lane. */
const SETTLE_MS = 4000
const SNAPSHOT_TIMEOUT_MS = 120_000
/** The floor parks a request whose key starts with this, for FLOOR_PARK_MS from the first one: past the snapshot. */
const FLOOR_PARKED = 'parked-'
const FLOOR_PARK_MS = 30_000
/** A signal close-with-grace does not treat as a shutdown (it does SIGUSR2). */
const SNAPSHOT_SIGNAL = 'SIGWINCH'

export function parseMemoryOptions (argv: string[]): MemoryOptions {
  const options: MemoryOptions = { requests: 2000, keyed: false, floor: false, top: 25 }
  for (let i = 0; i < argv.length; i += 1) {
    const flag = argv[i]
    if (flag === '--keyed') options.keyed = true
    else if (flag === '--floor') options.floor = true
    else if (flag === '--requests') options.requests = Number(argv[++i])
    else if (flag === '--top') options.top = Number(argv[++i])
    else throw new Error(`unknown option ${flag} (known: --requests N, --keyed, --floor, --top N)`)
  }
  if (!Number.isInteger(options.requests) || options.requests < 100 || options.requests > 10_000) throw new Error('--requests: 100..10000')
  if (!Number.isInteger(options.top) || options.top < 1 || options.top > 200) throw new Error('--top: 1..200')
  return options
}

interface HeapSummary { total: number, byKind: Map<string, { count: number, bytes: number }> }

interface HeapSnapshotFile {
  snapshot: { meta: { node_fields: string[], node_types: [string[]] } }
  nodes: number[]
  strings: string[]
}

/** Live bytes of a snapshot in all, and by kind: objects and closures by constructor name, the rest by node type. */
export function summariseSnapshot (snapshot: HeapSnapshotFile): HeapSummary {
  const fields = snapshot.snapshot.meta.node_fields
  const types = snapshot.snapshot.meta.node_types[0]
  const width = fields.length
  const [type, name, size] = [fields.indexOf('type'), fields.indexOf('name'), fields.indexOf('self_size')]
  const byKind = new Map<string, { count: number, bytes: number }>()
  let total = 0
  for (let i = 0; i < snapshot.nodes.length; i += width) {
    const nodeType = types[snapshot.nodes[i + type]!]!
    const bytes = snapshot.nodes[i + size]!
    const kind = nodeType === 'object' || nodeType === 'closure' ? `${nodeType} ${snapshot.strings[snapshot.nodes[i + name]!] || '(anonymous)'}` : nodeType
    const entry = byKind.get(kind) ?? { count: 0, bytes: 0 }
    entry.count += 1
    entry.bytes += bytes
    byKind.set(kind, entry)
    total += bytes
  }
  return { total, byKind }
}

async function burstInBackground (server: ChildServer, count: number, keyPrefix: string | undefined): Promise<void> {
  const args = [path.join(projectRoot, 'bench', 'burst-client.mjs'), `${server.url}/api/balance`, String(count), JSON.stringify({ userId: 1, amount: 1 }), 'PATCH', ...(keyPrefix === undefined ? [] : [keyPrefix])]
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.on('data', (chunk: Buffer) => { out += chunk.toString() })
  await new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => {
      const statuses = code === 0 ? (JSON.parse(out) as { statuses: Record<string, number> }).statuses : {}
      if (statuses['200'] === count) resolve()
      else reject(new Error(`burst: expected ${count} × 200, got ${out.trim()}`))
    })
  })
}

/** Signals the server to write a heap snapshot (a full GC first), waits until the file is complete, summarises it. */
async function snapshotOf (server: ChildServer, folder: string): Promise<HeapSummary> {
  const before = new Set(await readdir(folder))
  process.kill(server.pid, SNAPSHOT_SIGNAL)
  const deadline = Date.now() + SNAPSHOT_TIMEOUT_MS
  let file: string | undefined
  let lastSize = -1
  while (Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 500))
    file ??= (await readdir(folder)).find((name) => !before.has(name))
    if (file === undefined) continue
    const { size } = await stat(path.join(folder, file))
    if (size > 0 && size === lastSize) {
      const text = await readFile(path.join(folder, file), 'utf8')
      if (text.trimEnd().endsWith('}')) return summariseSnapshot(JSON.parse(text) as HeapSnapshotFile)
    }
    lastSize = size
  }
  throw new Error(`no complete heap snapshot within ${SNAPSHOT_TIMEOUT_MS} ms:\n${server.tail()}`)
}

export async function measureWaitingMemory (options: MemoryOptions): Promise<{ perRequest: number, baseMb: number, heldMb: number, rows: Array<{ kind: string, perRequest: number, countPerRequest: number }> }> {
  const folder = await mkdtemp(path.join(os.tmpdir(), 'balance-heap-'))
  const db = await createThrowawayDatabase('waiting-memory')
  let server: ChildServer | undefined
  try {
    const snapshots = `--heapsnapshot-signal=${SNAPSHOT_SIGNAL} --diagnostic-dir=${folder}`
    server = options.floor
      ? await startChildServer('floor', floorScript, { LOG_LEVEL: 'warn', FLOOR_PARK_KEY_PREFIX: FLOOR_PARKED, FLOOR_PARK_MS: String(FLOOR_PARK_MS), NODE_OPTIONS: snapshots })
      : await startChildServer('service', serverScript, {
        DATABASE_URL: db.url,
        LOG_LEVEL: 'warn',
        DB_STATEMENT_TIMEOUT_MS: String(WAIT_LIMIT_MS),
        GROUP_COMMIT_WAIT_TIMEOUT_MS: String(WAIT_LIMIT_MS),
        NODE_OPTIONS: snapshots,
      })
    // The floor holds requests only by their key, so its held burst is keyed whatever --keyed says.
    const prefix = (phase: string): string | undefined =>
      options.floor && phase === 'held' ? `${FLOOR_PARKED}${process.pid}` : options.keyed ? `memory-${process.pid}-${phase}` : undefined
    await burstInBackground(server, options.requests, prefix('warm-1'))
    await burstInBackground(server, options.requests, prefix('warm-2'))
    const base = await snapshotOf(server, folder)
    const lock = new pg.Client({ connectionString: db.url })
    await lock.connect()
    let held: HeapSummary
    let waiting: Promise<void>
    try {
      await lock.query('BEGIN')
      await lock.query('SELECT pg_advisory_xact_lock(1)')
      waiting = burstInBackground(server, options.requests, prefix('held'))
      await new Promise((resolve) => setTimeout(resolve, SETTLE_MS))
      held = await snapshotOf(server, folder)
    } finally {
      await lock.query('COMMIT').catch(() => {})
      await lock.end()
    }
    await waiting
    const rows = [...held.byKind].map(([kind, entry]) => {
      const was = base.byKind.get(kind) ?? { count: 0, bytes: 0 }
      return { kind, perRequest: (entry.bytes - was.bytes) / options.requests, countPerRequest: (entry.count - was.count) / options.requests }
    }).sort((a, b) => b.perRequest - a.perRequest).slice(0, options.top)
    return { perRequest: (held.total - base.total) / options.requests, baseMb: base.total / 1e6, heldMb: held.total / 1e6, rows }
  } finally {
    await server?.stop()
    await db.drop()
    await rm(folder, { recursive: true, force: true })
  }
}

async function main (): Promise<void> {
  const options = parseMemoryOptions(process.argv.slice(2))
  const result = await measureWaitingMemory(options)
  const lines = [
    `${options.requests} ${options.keyed ? 'keyed ' : ''}requests waiting ${options.floor ? 'on the HTTP floor' : 'for their batch'}: live heap ${result.baseMb.toFixed(1)} MB with none, ${result.heldMb.toFixed(1)} MB with them: **${Math.round(result.perRequest)} B per waiting request**`,
    '',
    '| kind | bytes per request | objects per request |',
    '|---|---|---|',
    ...result.rows.map((row) => `| ${row.kind} | ${Math.round(row.perRequest)} | ${row.countPerRequest.toFixed(2)} |`),
  ]
  process.stdout.write(lines.join('\n') + '\n')
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((error: unknown) => { process.stderr.write(`${error instanceof Error ? error.stack ?? error.message : String(error)}\n`); process.exit(1) })
}
