import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { chmod, chown, lstat, mkdir, readdir, rename, rm, rmdir, stat } from 'node:fs/promises'
import path from 'node:path'

/**
 * The embedded PostgreSQL's data folder (PGDATA_DIR) and the folders on the way to it.
 *
 * As root, PostgreSQL runs as the `postgres` user, which must be able to enter every folder on the path:
 * - folders this module creates on the way are 0755 (explicitly, whatever the umask), the data folder itself 0700
 *   and owned by the user PostgreSQL runs as;
 * - an existing folder that user cannot enter (say a 0700 /root) is named in a clear error before anything is created;
 * - initdb writes into `<PGDATA_DIR>.initdb-tmp` and the result is renamed into place only when initdb succeeded,
 *   so an interrupted or failed initdb never leaves a PGDATA_DIR that a later start takes for an initialised one.
 */
export interface RunAs { uid: number, gid: number, user: string }

export class DataFolderError extends Error {}

/** Mode of the folders created on the way to PGDATA_DIR: others (the `postgres` user) may enter them. */
const PARENT_MODE = 0o755
/** Mode PostgreSQL insists on for its data folder. */
const DATA_MODE = 0o700
const CHECK_TIMEOUT_MS = 10_000
const RM_RETRIES = 5

/** The folder initdb writes into before it is renamed to `dataDir`. */
export function initdbTempDir (dataDir: string): string {
  return `${dataDir}.initdb-tmp`
}

/** `/a/b/c` → [`/`, `/a`, `/a/b`]: the folders one passes through to reach `dir`. */
function ancestorsOf (dir: string): string[] {
  const result: string[] = []
  for (let current = path.dirname(dir); ; current = path.dirname(current)) {
    result.unshift(current)
    if (path.dirname(current) === current) return result
  }
}

async function exists (target: string): Promise<boolean> {
  try {
    await lstat(target)
    return true
  } catch (error) {
    // EACCES and the like: it may well exist; the enter check below names the folder that is in the way.
    return (error as NodeJS.ErrnoException).code !== 'ENOENT'
  }
}

/**
 * The first of `dirs` (in order) that `runAs` (the current user when undefined) cannot enter, or undefined.
 * As root it asks a shell running as that user (with the same uid, gid and no extra groups, exactly as PostgreSQL
 * will be started), so ACLs and group bits count as they will for PostgreSQL.
 */
export async function firstUnenterable (dirs: string[], runAs: RunAs | undefined): Promise<string | undefined> {
  if (dirs.length === 0) return undefined
  const script = 'for d in "$@"; do cd "$d" 2>/dev/null || { printf "%s" "$d"; exit 3; }; done'
  const ids = runAs === undefined ? {} : { uid: runAs.uid, gid: runAs.gid }
  const child = spawn('/bin/sh', ['-c', script, 'sh', ...dirs], { ...ids, stdio: ['ignore', 'pipe', 'ignore'], timeout: CHECK_TIMEOUT_MS })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', resolve)
  })
  if (code === 0) return undefined
  if (code === 3) return output
  throw new Error(`could not check the folders on the way to the data folder (/bin/sh exited with ${code})`)
}

function cannotEnter (folder: string, dataDir: string, runAs: RunAs | undefined, mode: string): DataFolderError {
  const who = runAs === undefined ? 'this user' : `the '${runAs.user}' user (PostgreSQL refuses to run as root, so the service runs it as '${runAs.user}')`
  if (folder === dataDir) {
    return new DataFolderError(
      `the embedded PostgreSQL cannot use ${dataDir}: ${who} cannot enter it (mode ${mode}; it belongs to another user). ` +
      'Remove it (its data is not usable from here), or set PGDATA_DIR to another folder.')
  }
  return new DataFolderError(
    `the embedded PostgreSQL cannot use ${dataDir}: ${who} cannot enter ${folder} (mode ${mode}). ` +
    `Either let it pass through that folder (chmod o+x ${folder}), or put the data elsewhere, e.g. ` +
    `PGDATA_DIR=/var/lib/balance-api/pg (or set DATABASE_URL to use your own PostgreSQL). Nothing was created.`)
}

async function modeOf (folder: string): Promise<string> {
  try {
    return ((await stat(folder)).mode & 0o7777).toString(8).padStart(4, '0')
  } catch {
    return 'unknown'
  }
}

/** Creates `dirs` (parents first) with mode 0755; returns the ones it created, for removal on failure. */
async function createParents (dirs: string[]): Promise<string[]> {
  const created: string[] = []
  try {
    for (const dir of dirs) {
      await mkdir(dir, { mode: PARENT_MODE })
      created.push(dir)
      await chmod(dir, PARENT_MODE) // the umask may have taken bits away
    }
  } catch (error) {
    await removeEmpty(created)
    throw new DataFolderError(`could not create ${dirs[created.length] ?? dirs[0]} for the embedded PostgreSQL: ${(error as Error).message}`, { cause: error })
  }
  return created
}

async function removeEmpty (created: string[]): Promise<void> {
  for (const dir of [...created].reverse()) await rmdir(dir).catch(() => {})
}

async function makeDataDir (dir: string, runAs: RunAs | undefined): Promise<void> {
  await mkdir(dir, { mode: DATA_MODE })
  await chmod(dir, DATA_MODE)
  if (runAs !== undefined) await chown(dir, runAs.uid, runAs.gid)
}

/**
 * Makes `dataDir` (absolute) an initialised PostgreSQL data folder unless it already is one (has PG_VERSION).
 * `initdb(dir)` runs initdb into an empty folder owned by the user PostgreSQL runs as.
 * On failure nothing it created is left behind; the error says what to do.
 */
export async function prepareDataFolder (dataDir: string, runAs: RunAs | undefined, initdb: (dir: string) => Promise<void>): Promise<void> {
  const ancestors = ancestorsOf(dataDir)
  const missingFrom = (await Promise.all(ancestors.map(exists))).indexOf(false)
  const existing = missingFrom === -1 ? ancestors : ancestors.slice(0, missingFrom)
  const missing = missingFrom === -1 ? [] : ancestors.slice(missingFrom)
  const dataDirExists = missing.length === 0 && await exists(dataDir)

  // Every existing folder on the way (and the data folder, if it is there) must be enterable; check before creating.
  const blocked = await firstUnenterable(dataDirExists ? [...existing, dataDir] : existing, runAs)
  const initialised = dataDirExists && existsSync(path.join(dataDir, 'PG_VERSION'))
  // As root, an empty data folder that PostgreSQL's user cannot enter yet is handed to it below.
  const ours = blocked === dataDir && runAs !== undefined && !initialised
  if (blocked !== undefined && !ours) throw cannotEnter(blocked, dataDir, runAs, await modeOf(blocked))
  if (initialised) return

  const temp = initdbTempDir(dataDir)
  // What an interrupted initdb left (a killed start): never an initialised cluster, so start over.
  await rm(temp, { recursive: true, force: true })

  let inPlace = false
  if (dataDirExists) {
    const entries = await readdir(dataDir)
    if (entries.length > 0) {
      throw new DataFolderError(`the embedded PostgreSQL cannot use ${dataDir}: it is not empty and is not a PostgreSQL data folder (no PG_VERSION). ` +
        'Move it away, or set PGDATA_DIR to another folder.')
    }
    // A mount point cannot be renamed onto: initialise it in place (PostgreSQL advises a subfolder of a mount point).
    inPlace = (await stat(dataDir)).dev !== (await stat(path.dirname(dataDir))).dev
    if (runAs !== undefined) await chown(dataDir, runAs.uid, runAs.gid)
    await chmod(dataDir, DATA_MODE)
  }

  const created = await createParents(missing)
  const target = inPlace ? dataDir : temp
  try {
    if (!inPlace) await makeDataDir(temp, runAs)
    await initdb(target)
    // rename replaces an empty existing dataDir atomically: PG_VERSION appears in PGDATA_DIR only complete.
    if (!inPlace) await rename(temp, dataDir)
  } catch (error) {
    if (inPlace) {
      for (const entry of await readdir(dataDir).catch(() => [])) await rm(path.join(dataDir, entry), { recursive: true, force: true })
    } else {
      // maxRetries: a killed initdb's bootstrap backend may still be writing for a moment.
      await rm(temp, { recursive: true, force: true, maxRetries: RM_RETRIES })
    }
    await removeEmpty(created)
    throw error
  }
}
