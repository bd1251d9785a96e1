import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import pg from 'pg'
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../db/embedded-postgres.js'

/**
 * Throwaway databases for tests and the bench: each call creates a fresh database and returns a URL to it.
 * With DATABASE_URL set (an admin URL to a server, e.g. postgres://postgres@127.0.0.1:5432/postgres), they are
 * created there; unset, on an embedded PostgreSQL this process starts in a temporary folder and stops when its
 * last database is dropped. Names start with `balance_tmp_` so a leftover is easy to spot.
 */
export interface ThrowawayDatabase {
  url: string
  name: string
  drop: () => Promise<void>
}

let embedded: Promise<EmbeddedPostgres> | undefined
let embeddedUsers = 0

async function embeddedServer (): Promise<EmbeddedPostgres> {
  embedded ??= (async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'balance-pg-'))
    const server = await startEmbeddedPostgres({ dataDir, database: 'postgres' })
    return { ...server, stop: async () => { await server.stop(); await rm(dataDir, { recursive: true, force: true }) } }
  })()
  return await embedded
}

async function releaseEmbedded (): Promise<void> {
  embeddedUsers -= 1
  if (embeddedUsers > 0 || embedded === undefined) return
  const server = await embedded
  embedded = undefined
  await server.stop()
}

async function adminQuery (adminUrl: string, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl })
  await client.connect()
  try {
    await client.query(sql)
  } finally {
    await client.end()
  }
}

export function withDatabase (url: string, database: string): string {
  const parsed = new URL(url)
  parsed.pathname = `/${encodeURIComponent(database)}`
  return parsed.toString()
}

export async function createThrowawayDatabase (label = 'db', adminUrl = process.env.DATABASE_URL): Promise<ThrowawayDatabase> {
  const useEmbedded = adminUrl === undefined || adminUrl === ''
  if (useEmbedded) embeddedUsers += 1
  const admin = useEmbedded ? (await embeddedServer()).adminUrl : adminUrl
  const name = `balance_tmp_${label.replace(/[^a-z0-9]+/gi, '_').toLowerCase().slice(0, 30)}_${process.pid}_${randomBytes(3).toString('hex')}`
  await adminQuery(admin, `CREATE DATABASE "${name}"`)
  let dropped = false
  return {
    url: withDatabase(admin, name),
    name,
    drop: async () => {
      if (dropped) return
      dropped = true
      await adminQuery(admin, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)
      if (useEmbedded) await releaseEmbedded()
    },
  }
}
