import type { FastifyInstance } from 'fastify'
import type { Test } from 'tap'
import { buildApp } from '../../src/app.js'
import { createThrowawayDatabase, type ThrowawayDatabase } from '../../src/tooling/throwaway-database.js'
import { testConfig } from '../helper.js'
import { startPgBouncer, type PgBouncer, type PgBouncerOptions } from '../../src/tooling/pgbouncer.js'

export interface BehindPgBouncer {
  db: ThrowawayDatabase
  bouncer: PgBouncer
  /** The instances, in the order started; each listens on its own loopback port. */
  apps: FastifyInstance[]
  /** Base URLs of the instances, same order. */
  bases: string[]
}

/**
 * A fresh database (the machine's PostgreSQL when DATABASE_URL is set, the embedded one otherwise), a real PgBouncer
 * in transaction mode in front of it, and `instances` service instances on that one PgBouncer, each listening on
 * its own port (DB_POOLER=pgbouncer-transaction). Everything is stopped in teardown, in reverse order.
 */
export async function behindPgBouncer (t: Test, label: string, options: {
  instances?: number
  env?: Record<string, string>
  bouncer?: Omit<PgBouncerOptions, 'host' | 'port'>
} = {}): Promise<BehindPgBouncer> {
  const db = await createThrowawayDatabase(label)
  const apps: FastifyInstance[] = []
  let bouncer: PgBouncer | undefined
  t.teardown(async () => {
    await Promise.all(apps.map(async (app) => { await app.close() }))
    await bouncer?.stop()
    await db.drop()
  })
  const target = new URL(db.url)
  bouncer = await startPgBouncer({ host: target.hostname, port: Number(target.port), ...options.bouncer })
  const config = testConfig(bouncer.via(db.url), 'advisory', { DB_POOLER: 'pgbouncer-transaction', ...options.env })
  const bases: string[] = []
  // One after the other: the first migrates; the others find nothing pending (they would queue on the lock anyway).
  for (let i = 0; i < (options.instances ?? 1); i += 1) {
    const app = await buildApp(config)
    apps.push(app)
    bases.push(await app.listen({ port: 0, host: '127.0.0.1', backlog: 16384 }))
  }
  return { db, bouncer, apps, bases }
}

export interface Answer { status: number, body: Record<string, unknown>, replayed: boolean }

/** One JSON request to an instance, with an optional Idempotency-Key; the answer's status, body and replay mark. */
export async function send (base: string, method: string, path: string, body: unknown, key?: string): Promise<Answer> {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: { 'content-type': 'application/json', ...(key === undefined ? {} : { 'idempotency-key': key }) },
    body: JSON.stringify(body),
  })
  return { status: response.status, body: await response.json() as Record<string, unknown>, replayed: response.headers.get('idempotent-replayed') === 'true' }
}
