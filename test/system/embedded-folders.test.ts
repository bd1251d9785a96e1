import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { chmod, mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import t, { type Test } from 'tap'
import pg from 'pg'
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../../src/db/embedded-postgres.js'
import { initdbTempDir } from '../../src/db/data-folder.js'
import { buildApp } from '../../src/app.js'
import { loadConfig } from '../../src/config.js'

// Real starts of the embedded PostgreSQL in folders a newcomer's machine has: nested folders the service creates
// itself (under any umask), a 0700 parent it cannot pass as root, an initdb that dies half-way.
const isRoot = process.getuid?.() === 0
const INTERRUPT_TIMEOUT_MS = 30_000

/** A fresh folder like the one a clone sits in: 0755 (mkdtemp makes 0700). */
async function workFolder (t: Test, mode = 0o755): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'balance-folders-'))
  await chmod(dir, mode)
  t.teardown(async () => { await chmod(dir, 0o755); await rm(dir, { recursive: true, force: true }) })
  return dir
}

async function start (t: Test, dataDir: string): Promise<EmbeddedPostgres> {
  const embedded = await startEmbeddedPostgres({ dataDir, database: 'balance' })
  t.teardown(async () => { await embedded.stop() })
  return embedded
}

async function selectOne (url: string): Promise<number> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return (await client.query<{ one: number }>('SELECT 1 AS one')).rows[0]?.one ?? 0
  } finally {
    await client.end()
  }
}

/** Processes whose command line contains `text` (pgrep exits 1 when there is none). */
function pidsMatching (text: string): number[] {
  try {
    return execFileSync('pgrep', ['-f', '--', text]).toString().trim().split('\n').filter(Boolean).map(Number)
  } catch {
    return []
  }
}

const modeOf = async (dir: string): Promise<number> => (await stat(dir)).mode & 0o777
const postgresUid = (): number => Number(execFileSync('id', ['-u', 'postgres']).toString().trim())

t.test('nested folders the service creates on the way to PGDATA_DIR are 0755 whatever the umask; the data folder is 0700', async (t) => {
  const clone = await workFolder(t)
  const dataDir = path.join(clone, 'balance-api', '.data', 'pg') // like the default .data/pg in a fresh clone
  const umask = process.umask(0o077) // a strict umask would make plain mkdir folders 0700
  t.teardown(() => { process.umask(umask) })
  const embedded = await start(t, dataDir)
  process.umask(umask)

  t.equal(await selectOne(embedded.url), 1, 'the embedded PostgreSQL answers')
  t.equal(await modeOf(path.join(clone, 'balance-api')), 0o755, 'balance-api/ created 0755')
  t.equal(await modeOf(path.join(clone, 'balance-api', '.data')), 0o755, '.data/ created 0755')
  t.equal(await modeOf(dataDir), 0o700, 'the data folder is 0700 (PostgreSQL requires it)')
  if (isRoot) t.equal((await stat(dataDir)).uid, postgresUid(), 'as root, the data folder belongs to the postgres user')
  t.ok(existsSync(path.join(dataDir, 'PG_VERSION')), 'initialised in PGDATA_DIR')
  t.notOk(existsSync(initdbTempDir(dataDir)), 'no initdb temporary folder is left')
})

t.test('as root, a 0700 parent the postgres user cannot enter: a clear error names it, nothing is created, and after chmod the next start works', async (t) => {
  if (!isRoot) { t.plan(0, 'skipped: needs root (PostgreSQL then runs as the postgres user)'); return }
  const home = await workFolder(t, 0o700) // like /root
  const dataDir = path.join(home, 'balance-api', '.data', 'pg')

  const error = await startEmbeddedPostgres({ dataDir, database: 'balance' }).then(() => undefined, (error: unknown) => error as Error)
  t.ok(error instanceof Error, 'the start fails')
  t.match(error?.message, `cannot enter ${home} (mode 0700)`, 'the error names the folder and its mode')
  t.match(error?.message, `chmod o+x ${home}`, 'and says how to let PostgreSQL through')
  t.match(error?.message, 'PGDATA_DIR=', 'or where else to put the data')
  t.same(await readdir(home), [], 'nothing was created under it')

  // The same through the app (what `npm start` runs): the error reaches the caller unchanged.
  const config = loadConfig({ PGDATA_DIR: dataDir, LOG_LEVEL: 'silent' }, false)
  await t.rejects(buildApp(config), { message: new RegExp(`cannot enter ${home}`) }, 'buildApp fails with the same message')
  t.same(await readdir(home), [], 'still nothing created')

  await chmod(home, 0o711) // what the error says: let others pass through (not list)
  const embedded = await start(t, dataDir)
  t.equal(await selectOne(embedded.url), 1, 'the next start just works')
})

t.test('an initdb killed half-way leaves no PGDATA_DIR that a later start takes for an initialised cluster', async (t) => {
  const clone = await workFolder(t)
  const dataDir = path.join(clone, '.data', 'pg')
  const temp = initdbTempDir(dataDir)
  const starting = startEmbeddedPostgres({ dataDir, database: 'balance' })
  // initdb writes PG_VERSION first and then bootstraps the cluster (the long part): kill it in between.
  const deadline = Date.now() + INTERRUPT_TIMEOUT_MS
  let killed = 0
  while (Date.now() < deadline && killed === 0) {
    if (existsSync(path.join(temp, 'PG_VERSION'))) {
      for (const pid of pidsMatching(`--pgdata ${temp}`)) { process.kill(pid, 'SIGKILL'); killed++ }
    }
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  t.ok(killed > 0, 'initdb was killed while it was writing the cluster')
  await t.rejects(starting, { message: /could not initialise the embedded PostgreSQL/ }, 'that start fails')
  t.notOk(existsSync(dataDir), 'no PGDATA_DIR is left')
  t.notOk(existsSync(temp), 'the half-written cluster is removed')
  t.notOk(existsSync(path.join(clone, '.data')), 'the folder created on the way is removed too')

  const embedded = await start(t, dataDir)
  t.equal(await selectOne(embedded.url), 1, 'the next start initialises and starts')
})

t.test('a half-written cluster left by a killed start (the whole process died) is started over, not used', async (t) => {
  const clone = await workFolder(t)
  const dataDir = path.join(clone, 'pg')
  const temp = initdbTempDir(dataDir)
  await mkdir(path.join(temp, 'base'), { recursive: true })
  await writeFile(path.join(temp, 'PG_VERSION'), '18\n')
  const embedded = await start(t, dataDir)
  t.equal(await selectOne(embedded.url), 1, 'a fresh cluster starts')
  t.notOk(existsSync(temp), 'the leftover is gone')
})

t.test('an existing empty PGDATA_DIR is initialised; a non-empty one that is no cluster is refused with a clear error', async (t) => {
  const clone = await workFolder(t)
  const empty = path.join(clone, 'empty')
  await mkdir(empty, { mode: 0o755 })
  const embedded = await start(t, empty)
  t.equal(await selectOne(embedded.url), 1, 'initialised into the empty folder')
  t.equal(await modeOf(empty), 0o700)

  const cluttered = path.join(clone, 'cluttered')
  await mkdir(cluttered, { mode: 0o755 })
  await writeFile(path.join(cluttered, 'notes.txt'), 'mine\n')
  await t.rejects(startEmbeddedPostgres({ dataDir: cluttered, database: 'balance' }),
    { message: new RegExp(`cannot use ${cluttered}: it is not empty and is not a PostgreSQL data folder`) })
  t.same(await readdir(cluttered), ['notes.txt'], 'its contents are untouched')
})
