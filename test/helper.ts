import type { FastifyInstance } from 'fastify'
import type { Test } from 'tap'
import { buildApp } from '../src/app.js'
import { USER_BOOKS_SQL, checkBooks, toUserBooks, type BooksReport, type UserBooks, type UserBooksRow } from '../src/db/check-books.js'
import { isDatabaseUnavailable } from '../src/db/errors.js'
import type { Sequelize } from 'sequelize'
import { STRATEGY_NAMES, loadConfig, type Config, type StrategyName } from '../src/config.js'
import { createThrowawayDatabase, type ThrowawayDatabase } from '../src/tooling/throwaway-database.js'
import { startTcpProxy, type TcpProxy } from './support/tcp-proxy.js'

export interface BuildOptions {
  strategy?: StrategyName
  env?: Record<string, string>
  /** Reuse a database (e.g. to restart on the same data); a fresh one is created otherwise. */
  database?: ThrowawayDatabase
}

export interface Built {
  app: FastifyInstance
  db: ThrowawayDatabase
  config: Config
}

/** Config for a test app: silent logs, the given database, overrides last. */
export function testConfig (databaseUrl: string, strategy: StrategyName = 'advisory', env: Record<string, string> = {}): Config {
  return loadConfig({ DATABASE_URL: databaseUrl, BALANCE_STRATEGY: strategy, LOG_LEVEL: 'silent', PORT: '0', HOST: '127.0.0.1', ...env }, false)
}

/**
 * A ready app on its own fresh database (the machine's PostgreSQL when DATABASE_URL is an admin URL, embedded
 * otherwise). Closed and dropped in teardown.
 */
export async function build (t: Test, options: BuildOptions = {}): Promise<Built> {
  const db = options.database ?? await createThrowawayDatabase(t.name)
  if (options.database === undefined) t.teardown(db.drop)
  const config = testConfig(db.url, options.strategy, options.env)
  const app = await buildApp(config)
  t.teardown(async () => { await app.close() })
  return { app, db, config }
}

/** The same app listening on a real loopback port; returns its base URL. */
export async function listen (app: FastifyInstance): Promise<string> {
  return await app.listen({ port: 0, host: '127.0.0.1', backlog: 16384 })
}

export const strategies: StrategyName[] = [...STRATEGY_NAMES]

/** One SQL query on a test database, for checks that must not go through the code under test. */
export async function sql<T extends Record<string, unknown>> (app: FastifyInstance, query: string, bind: unknown[] = []): Promise<T[]> {
  const [rows] = await app.sequelize.query(query, { bind })
  return rows as T[]
}

/** Σ journal amounts, the stored balance and the entry count of a user, as numbers. */
export async function books (app: FastifyInstance, userId: number): Promise<UserBooks> {
  return toUserBooks((await sql<UserBooksRow>(app, USER_BOOKS_SQL, [userId]))[0], userId)
}

/**
 * A fresh database reached through a loopback TCP proxy the test controls (cut, restore, swallow replies), and an
 * app built on it; database, proxy and app are closed in teardown.
 */
export async function buildBehindProxy (t: Test, label: string, env: Record<string, string>): Promise<{ app: FastifyInstance, db: ThrowawayDatabase, proxy: TcpProxy }> {
  const db = await createThrowawayDatabase(label)
  t.teardown(db.drop)
  const target = new URL(db.url)
  const proxy = await startTcpProxy(target.hostname, Number(target.port))
  t.teardown(proxy.close)
  const viaProxy = new URL(db.url)
  viaProxy.port = String(proxy.port)
  const app = await buildApp(testConfig(viaProxy.toString(), 'advisory', env))
  t.teardown(async () => { await app.close() })
  return { app, db, proxy }
}

/**
 * The books checker after a test killed the app's backends: a pooled connection may still be one the test
 * terminated (its FATAL not yet read), so a check that fails for that reason alone is run again on a fresh one.
 */
export async function checkBooksAfterFaults (sequelize: Sequelize, attempts = 5): Promise<BooksReport> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await checkBooks(sequelize)
    } catch (error) {
      if (attempt >= attempts || !isDatabaseUnavailable(error)) throw error
    }
  }
}
